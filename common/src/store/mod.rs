//! Record store (owned by the IPAM work).

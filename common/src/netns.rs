//! Network namespaces: open one by path, and run work inside it on a thread of its own
//! (setns changes only the calling thread, so the process's main thread never leaves the host namespace).
use nix::sched::{setns, CloneFlags};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::path::Path;

const NSFS_MAGIC: i64 = 0x6e73_6673;
const PROC_SUPER_MAGIC: i64 = 0x9fa0;

pub struct NetNs {
    file: File,
}

impl NetNs {
    /// Opens the namespace at `path` (`/run/netns/x` or `/proc/<pid>/ns/net`), refusing anything that is not one.
    pub fn open(path: &Path) -> io::Result<NetNs> {
        let file = File::open(path)?;
        let fs = nix::sys::statfs::fstatfs(&file).map_err(io::Error::from)?;
        let magic = fs.filesystem_type().0 as i64;
        if magic != NSFS_MAGIC && magic != PROC_SUPER_MAGIC {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("{} is not a network namespace", path.display())));
        }
        Ok(NetNs { file })
    }

    /// The namespace of the calling thread.
    pub fn current() -> io::Result<NetNs> {
        Ok(NetNs { file: File::open("/proc/thread-self/ns/net")? })
    }

    pub fn fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    /// Whether two handles name the same namespace (same nsfs inode).
    pub fn same_as(&self, other: &NetNs) -> io::Result<bool> {
        let a = nix::sys::stat::fstat(self.file.as_fd()).map_err(io::Error::from)?;
        let b = nix::sys::stat::fstat(other.file.as_fd()).map_err(io::Error::from)?;
        Ok(a.st_dev == b.st_dev && a.st_ino == b.st_ino)
    }

    /// Moves the calling thread into this namespace for good: only for a fresh thread that ends when its
    /// work here is done (a scoped worker), never for one that is used again. `run` is the general form.
    pub fn enter_for_this_thread(&self) -> io::Result<()> {
        setns(self.file.as_fd(), CloneFlags::CLONE_NEWNET).map_err(io::Error::from)
    }

    /// Runs `f` on a fresh thread that has entered this namespace; the thread ends with `f`,
    /// so no thread is ever reused in the wrong namespace.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> io::Result<T> {
        std::thread::scope(|s| {
            s.spawn(|| {
                setns(self.file.as_fd(), CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
                Ok(f())
            })
            .join()
            .map_err(|_| io::Error::other("namespace worker thread panicked"))?
        })
    }
}

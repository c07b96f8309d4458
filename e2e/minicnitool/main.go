// minicnitool: a cnitool-like libcni client, built offline from Debian's golang-github-appc-cni-dev
// (GOPATH mode, see e2e/scripts/build-minicnitool.sh). It is how a Go runtime drives our plugins:
// libcni loads the conflist, execs the plugins with CNI_PATH, caches the ADD result and sends it as
// prevResult on CHECK and DEL.
//
//	minicnitool add|check|del NETWORK NETNS
//
// Env: NETCONFPATH (conf dir, default /etc/cni/net.d), CNI_PATH, CNI_IFNAME (default eth0),
// CNI_CONTAINERID (default: derived from NETNS as cnitool does), CNI_CACHEDIR (default /var/lib/cni),
// CNI_ARGS (K=V;K=V). ADD prints the result; errors go to stderr with exit status 1.
package main

import (
	"context"
	"crypto/sha512"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/containernetworking/cni/libcni"
)

func env(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "minicnitool: "+format+"\n", args...)
	os.Exit(1)
}

func main() {
	if len(os.Args) != 4 {
		fail("usage: minicnitool add|check|del NETWORK NETNS")
	}
	verb, network, netns := os.Args[1], os.Args[2], os.Args[3]
	netconf, err := libcni.LoadConfList(env("NETCONFPATH", "/etc/cni/net.d"), network)
	if err != nil {
		fail("loading network %s: %v", network, err)
	}
	netns, err = filepath.Abs(netns)
	if err != nil {
		fail("netns path: %v", err)
	}
	containerID := os.Getenv("CNI_CONTAINERID")
	if containerID == "" {
		sum := sha512.Sum512([]byte(netns))
		containerID = fmt.Sprintf("cnitool-%x", sum[:10])
	}
	var args [][2]string
	if a := os.Getenv("CNI_ARGS"); a != "" {
		for _, kv := range strings.Split(a, ";") {
			parts := strings.SplitN(kv, "=", 2)
			if len(parts) != 2 || parts[0] == "" || parts[1] == "" {
				fail("invalid CNI_ARGS pair %q", kv)
			}
			args = append(args, [2]string{parts[0], parts[1]})
		}
	}
	cninet := libcni.NewCNIConfigWithCacheDir(filepath.SplitList(os.Getenv("CNI_PATH")), env("CNI_CACHEDIR", ""), nil)
	rt := &libcni.RuntimeConf{ContainerID: containerID, NetNS: netns, IfName: env("CNI_IFNAME", "eth0"), Args: args}
	ctx := context.Background()
	switch verb {
	case "add":
		result, err := cninet.AddNetworkList(ctx, netconf, rt)
		if err != nil {
			fail("add: %v", err)
		}
		if err := result.Print(); err != nil {
			fail("printing result: %v", err)
		}
	case "check":
		if err := cninet.CheckNetworkList(ctx, netconf, rt); err != nil {
			fail("check: %v", err)
		}
	case "del":
		if err := cninet.DelNetworkList(ctx, netconf, rt); err != nil {
			fail("del: %v", err)
		}
	default:
		fail("unknown command %q (add, check, del)", verb)
	}
}

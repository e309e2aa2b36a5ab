// LookupHost(os.Args[1]) through Go's own resolver (PreferGo, and built with CGO_ENABLED=0): one address per line; exit 2 if not found.

package main

import (
	"context"
	"fmt"
	"net"
	"os"
)

func main() {
	r := &net.Resolver{PreferGo: true}
	addrs, err := r.LookupHost(context.Background(), os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	for _, a := range addrs {
		fmt.Println(a)
	}
}

package accessd

import (
	"testing"

	"github.com/tcpwrapd/tcpwrapd/pkg/resolve"
)

// TestDefaultEnvResolver: every DefaultEnv shares one caching resolver and
// one reloading netgroup database.
func TestDefaultEnvResolver(t *testing.T) {
	a, b := DefaultEnv(), DefaultEnv()
	r, ok := a.Resolver.(*resolve.Resolver)
	if !ok {
		t.Fatalf("DefaultEnv Resolver = %T, want *resolve.Resolver", a.Resolver)
	}
	if b.Resolver != a.Resolver {
		t.Error("two DefaultEnvs have different resolvers")
	}
	if ng, ok := a.Netgroups.(*resolve.Netgroups); !ok || b.Netgroups != a.Netgroups {
		t.Errorf("DefaultEnv Netgroups = %T (shared: %v), want one *resolve.Netgroups", ng, b.Netgroups == a.Netgroups)
	}
	_ = r.Stats()
}

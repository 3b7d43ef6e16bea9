package route_test

import (
	"fmt"
	"testing"

	"lbscale/balancer/route"
)

// benchRules is a pool file of n pools each with an exact host and two path
// prefixes, plus three wildcard pools and one pool without hosts, as a
// front door for many services would have.
func benchRules(n int) []route.Rule {
	rules := make([]route.Rule, 0, n+4)
	for i := range n {
		rules = append(rules, route.Rule{
			Pool:  fmt.Sprintf("svc%d", i),
			Hosts: []string{fmt.Sprintf("svc%d.example.com", i)},
			Paths: []string{"/api", "/static/"},
		})
	}
	return append(rules,
		route.Rule{Pool: "tenants", Hosts: []string{"*.tenants.example.com"}},
		route.Rule{Pool: "preview", Hosts: []string{"*.preview.example.com"}, Paths: []string{"/", "/assets/"}},
		route.Rule{Pool: "apps", Hosts: []string{"*.apps.example.net"}},
		route.Rule{Pool: "default"},
	)
}

// BenchmarkMatch measures one Match at 1, 10 and 100 exact-host pools, for
// the host in the middle of the table. The cost must not grow with the
// pools: each case is a fixed number of map lookups and prefix checks.
//
//	exact      lower-case host, longest of its two prefixes
//	mixed-case upper-case letters and a port, lowered on the stack
//	wildcard   a tenant name under a wildcard, two labels deep
//	fallback   an exact host none of whose prefixes covers the path,
//	           through the wildcard level to the pool without hosts
func BenchmarkMatch(b *testing.B) {
	for _, n := range []int{1, 10, 100} {
		tbl, err := route.New(benchRules(n), func(pool string) string { return pool })
		if err != nil {
			b.Fatal(err)
		}
		mid := n / 2
		cases := []struct {
			name, host, path, want string
		}{
			{"exact", fmt.Sprintf("svc%d.example.com", mid), "/api/users/42", fmt.Sprintf("svc%d", mid)},
			{"mixed-case", fmt.Sprintf("SVC%d.Example.com:8443", mid), "/static/app.js", fmt.Sprintf("svc%d", mid)},
			{"wildcard", "acme.eu.tenants.example.com", "/orders/7", "tenants"},
			{"fallback", fmt.Sprintf("svc%d.example.com", mid), "/healthz", "default"},
		}
		for _, c := range cases {
			b.Run(fmt.Sprintf("pools=%d/%s", n, c.name), func(b *testing.B) {
				if got, _ := tbl.Match(c.host, c.path); got != c.want {
					b.Fatalf("Match(%q, %q) = %q; want %q", c.host, c.path, got, c.want)
				}
				b.ReportAllocs()
				for b.Loop() {
					tbl.Match(c.host, c.path)
				}
			})
		}
	}
}

// BenchmarkMatchPaths measures one host with many path prefixes, as when
// services share a domain and split it by path: up to a handful the
// prefixes are scanned, past that looked up per path segment, so 100
// prefixes cost about what 10 do.
func BenchmarkMatchPaths(b *testing.B) {
	for _, n := range []int{4, 10, 100} {
		rules := make([]route.Rule, n)
		for i := range rules {
			rules[i] = route.Rule{Pool: fmt.Sprintf("svc%d", i), Paths: []string{fmt.Sprintf("/svc%d", i)}}
		}
		tbl, err := route.New(rules, func(pool string) string { return pool })
		if err != nil {
			b.Fatal(err)
		}
		path := fmt.Sprintf("/svc%d/v1/items/42", n/2)
		b.Run(fmt.Sprintf("prefixes=%d", n), func(b *testing.B) {
			if _, ok := tbl.Match("example.com", path); !ok {
				b.Fatalf("no match for %s", path)
			}
			b.ReportAllocs()
			for b.Loop() {
				tbl.Match("example.com", path)
			}
		})
	}
}

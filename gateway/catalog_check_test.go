package gateway

import (
	"reflect"
	"testing"

	"github.com/pulsefaas/pulse/contract"
	"github.com/pulsefaas/pulse/internal/catalog"
)

// The catalog skips the functions whose service fails catalog.CheckFunction;
// the renderer and the cold-start path check again with CheckFunction. Both
// must give the same answer, or a function the catalog lists could not be
// rendered (or one it skips could): these tests tie them until render.go
// calls catalog.CheckFunction itself.

var checkFunctionCases = []struct {
	name   string
	labels map[string]string
}{
	{"hello", nil},
	{"a", map[string]string{contract.LabelTimeout: "30s", contract.LabelMaxBody: "1048576"}},
	{"Odd_Name", nil},
	{"", nil},
	{"-x", nil},
	{"x-", nil},
	{"a123456789012345678901234567890123456789012345678901234567890123", nil},
	{"hello", map[string]string{contract.LabelTimeout: "abc"}},
	{"hello", map[string]string{contract.LabelTimeout: "0s"}},
	{"hello", map[string]string{contract.LabelTimeout: "-1s"}},
	{"hello", map[string]string{contract.LabelTimeout: "24h"}},
	{"hello", map[string]string{contract.LabelTimeout: "24h0m0.001s"}},
	{"hello", map[string]string{contract.LabelMaxBody: "-1"}},
	{"hello", map[string]string{contract.LabelMaxBody: "0"}},
	{"hello", map[string]string{contract.LabelMaxBody: "1125899906842624"}},
	{"hello", map[string]string{contract.LabelMaxBody: "1125899906842625"}},
	{"hello", map[string]string{contract.LabelMaxBody: "1e3"}},
	{"hello", map[string]string{contract.LabelTimeout: "abc", contract.LabelMaxBody: "x"}},
}

func checkFunctionSame(t *testing.T, name string, labels map[string]string) {
	t.Helper()
	gs, gerr := CheckFunction(name, labels)
	cs, cerr := catalog.CheckFunction(name, labels)
	if (gerr == nil) != (cerr == nil) || (gerr != nil && gerr.Error() != cerr.Error()) {
		t.Fatalf("CheckFunction(%q, %v): gateway %v, catalog %v", name, labels, gerr, cerr)
	}
	if !reflect.DeepEqual(FunctionSettings(cs), gs) {
		t.Fatalf("CheckFunction(%q, %v): gateway %+v, catalog %+v", name, labels, gs, cs)
	}
}

// TestCatalogCheckFunctionAgrees: the gateway's and the catalog's checks
// accept and refuse the same services, with the same reasons.
func TestCatalogCheckFunctionAgrees(t *testing.T) {
	for _, c := range checkFunctionCases {
		checkFunctionSame(t, c.name, c.labels)
	}
}

// FuzzCatalogCheckFunction: any name and label values.
func FuzzCatalogCheckFunction(f *testing.F) {
	for _, c := range checkFunctionCases {
		f.Add(c.name, c.labels[contract.LabelTimeout], c.labels[contract.LabelMaxBody])
	}
	f.Fuzz(func(t *testing.T, name, timeout, maxBody string) {
		labels := map[string]string{}
		if timeout != "" {
			labels[contract.LabelTimeout] = timeout
		}
		if maxBody != "" {
			labels[contract.LabelMaxBody] = maxBody
		}
		checkFunctionSame(t, name, labels)
	})
}

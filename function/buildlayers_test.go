package function

import (
	"testing"

	"github.com/pulsefaas/pulse/contract"
)

// TestBuildSharesWatchdogLayer builds different functions, each with a cache
// of its own (as on two machines): the fork-mode ones (C, and a static
// executable) have one base layer, the watchdog, though their images differ;
// an http-mode function has another (its watchdog links the http mode
// instead of fork); an in-process Go function has none.
func TestBuildSharesWatchdogLayer(t *testing.T) {
	fixture := func(lang string) buildFixture {
		for _, f := range buildFixtures {
			if f.lang == lang {
				return f
			}
		}
		t.Fatalf("no %s fixture", lang)
		return buildFixture{}
	}
	build := func(spec Spec) Image {
		t.Helper()
		img, _, err := Build(t.Context(), spec, buildOpts(t, nil))
		if err != nil {
			t.Fatal(err)
		}
		return img
	}
	c := build(fixtureSpec(t, fixture(LangC)))
	bin := build(fixtureSpec(t, fixture(LangBin)))
	httpSpec := fixtureSpec(t, fixture(LangBin))
	httpSpec.Mode, httpSpec.Port = contract.ModeHTTP, DefaultPort
	http := build(httpSpec)
	goImg := build(fixtureSpec(t, fixture(LangGo)))

	if c.BaseLayer == "" || c.BaseLayer != bin.BaseLayer || c.ID == bin.ID {
		t.Errorf("fork mode: C %s (base %s), bin %s (base %s); want one base layer, two images", c.ID, c.BaseLayer, bin.ID, bin.BaseLayer)
	}
	if http.BaseLayer == "" || http.BaseLayer == c.BaseLayer {
		t.Errorf("http mode: base %q, want one of its own (fork mode's is %s)", http.BaseLayer, c.BaseLayer)
	}
	if goImg.BaseLayer != "" || goImg.Thin != nil {
		t.Errorf("in-process Go: base %q, %d thin bytes; want one layer", goImg.BaseLayer, len(goImg.Thin))
	}
	for name, img := range map[string]Image{"c": c, "bin": bin, "http": http} {
		t.Logf("%s: full archive %d bytes, thin %d", name, len(img.Archive), len(img.Thin))
		if len(img.Thin)*5 > len(img.Archive) {
			t.Errorf("%s: thin archive %d bytes of %d: want the watchdog left out", name, len(img.Thin), len(img.Archive))
		}
	}
}

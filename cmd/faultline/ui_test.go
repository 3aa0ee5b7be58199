package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/faultline-dev/faultline/pipeline/replay"
	"github.com/faultline-dev/faultline/processors/alert"
)

var updateScreenshot = flag.Bool("update", false, "rewrite docs/img/ui-incident.png, the README's screenshot of the web UI")

// chromiumBin finds the browser: $FAULTLINE_CHROMIUM_BIN, else Debian's
// chromium (make test installs it when missing).
func chromiumBin(t *testing.T) string {
	t.Helper()
	bin := os.Getenv("FAULTLINE_CHROMIUM_BIN")
	if bin == "" {
		bin = "/usr/bin/chromium"
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("no browser at %s: run the tests with make test, which installs Debian's chromium, or set FAULTLINE_CHROMIUM_BIN (%v)", bin, err)
	}
	return bin
}

// TestUIInBrowser replays the reference scenario through the whole stack,
// then drives headless Chromium through the web UI as a person would: the
// incident list, an incident's page opened from the links of the JSON,
// Slack and PagerDuty alerts, its chart drawn, its suspect deploy, the DORA
// page and its trend, a metrics-only incident's request chart, and an
// unknown id. Every page must render without a console error; each is
// saved as a screenshot.
func TestUIInBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("replays the scenario and starts a browser")
	}
	chromium := chromiumBin(t)
	hooks := &linkReceiver{links: map[string][]alertLink{}}
	srv := httptest.NewServer(hooks)
	defer srv.Close()
	targets, err := json.Marshal([]map[string]any{
		{"name": "json", "url": srv.URL + "/json", "format": "json", "secret": "s"},
		{"name": "slack", "url": srv.URL + "/slack", "format": "slack"},
		{"name": "pagerduty", "url": srv.URL + "/pagerduty", "format": "pagerduty", "routing_key": strings.Repeat("k", 32)},
	})
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "targets.json")
	if err := os.WriteFile(file, targets, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("FAULTLINE_WEBHOOK_TARGETS_FILE", file)

	shots := os.Getenv("FAULTLINE_UI_SCREENSHOTS")
	if shots == "" {
		shots = t.TempDir()
	} else if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}
	runStack(t, stackRun{
		reqs: replay.Scenario(1),
		settled: func(ctx context.Context, s *stack) bool {
			all := strings.Join(outcome(t, ctx, s), "\n")
			return strings.Contains(all, "catalog/production 11:02-11:15 ttr=780 suspect=v5.0.0") &&
				strings.Contains(all, "api checkout/production 13:20-13:50") && strings.Contains(all, "ledger/production")
		},
		inspect: func(ctx context.Context, s *stack) {
			if s.ui == nil {
				t.Fatal("faultline run started no UI")
			}
			browse(t, chromium, "http://"+s.ui.Addr(), hooks, shots)
		},
	})
}

// alertLink is an incident link as one alert format carried it.
type alertLink struct{ incident, url string }

// linkReceiver keeps the incident links of the alerts each format brings.
type linkReceiver struct {
	mu    sync.Mutex
	links map[string][]alertLink // by format
}

var slackLinkRE = regexp.MustCompile(`<(http[^|>]+)\|incident>`)

func (h *linkReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	format := strings.TrimPrefix(r.URL.Path, "/")
	var found []alertLink
	switch format {
	case "json":
		var ev alert.Event
		if json.Unmarshal(body, &ev) == nil && ev.Incident != nil {
			for _, l := range ev.Links {
				found = append(found, alertLink{ev.Incident.ID, l.URL})
			}
		}
	case "slack":
		var msg struct {
			Blocks []struct {
				Text struct{ Text string }
			}
		}
		if json.Unmarshal(body, &msg) == nil {
			for _, b := range msg.Blocks {
				for _, m := range slackLinkRE.FindAllStringSubmatch(b.Text.Text, -1) {
					found = append(found, alertLink{"", m[1]})
				}
			}
		}
	case "pagerduty":
		var pd struct {
			DedupKey string `json:"dedup_key"`
			Links    []struct{ Href, Text string }
		}
		if json.Unmarshal(body, &pd) == nil {
			for _, l := range pd.Links {
				if strings.HasPrefix(l.Text, "faultline incident") {
					found = append(found, alertLink{"", l.Href})
				}
			}
		}
	}
	h.mu.Lock()
	h.links[format] = append(h.links[format], found...)
	h.mu.Unlock()
	w.WriteHeader(http.StatusAccepted)
}

// waitLinks returns one incident link per format once every format has
// brought one.
func (h *linkReceiver) waitLinks(t *testing.T) map[string]alertLink {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		h.mu.Lock()
		got := map[string]alertLink{}
		for f, ls := range h.links {
			if len(ls) > 0 {
				got[f] = ls[0]
			}
		}
		h.mu.Unlock()
		if len(got) == 3 {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("alerts brought incident links in %d of 3 formats: %v", len(got), got)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// canvasInk counts the painted pixels of the first canvas under sel.
const canvasInk = `(() => {
	const c = document.querySelector(%q);
	if (!c) return -1;
	const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
	let n = 0;
	for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
	return n;
})()`

// clickRow clicks the incident link of the first list row that shows the
// given text.
const clickRow = `(() => {
	const row = [...document.querySelectorAll('#incidents tbody tr')].find(r => r.textContent.includes(%q));
	if (!row) return false;
	row.querySelector('a.incident-link').click();
	return true;
})()`

func browse(t *testing.T, chromium, base string, hooks *linkReceiver, shots string) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	alloc, cancelAlloc := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(chromium),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(alloc)
	defer cancelBrowser()

	// Every console error, uncaught exception and failed load is a
	// failure, except the 404 this test asks for on purpose.
	const missing = "/incidents/no-such-incident"
	var mu sync.Mutex
	var problems []string
	chromedp.ListenTarget(bctx, func(ev any) {
		var p string
		switch e := ev.(type) {
		case *runtime.EventConsoleAPICalled:
			if e.Type == runtime.APITypeError || e.Type == runtime.APITypeAssert {
				var args []string
				for _, a := range e.Args {
					args = append(args, string(a.Value)+a.Description)
				}
				p = "console." + string(e.Type) + ": " + strings.Join(args, " ")
			}
		case *runtime.EventExceptionThrown:
			p = "exception: " + e.ExceptionDetails.Error()
		case *cdplog.EventEntryAdded:
			if e.Entry.Level == cdplog.LevelError && !strings.HasSuffix(e.Entry.URL, missing) {
				p = "log: " + e.Entry.Text + " " + e.Entry.URL
			}
		}
		if p != "" {
			mu.Lock()
			problems = append(problems, p)
			mu.Unlock()
		}
	})

	run := func(step string, actions ...chromedp.Action) {
		t.Helper()
		if err := chromedp.Run(bctx, actions...); err != nil {
			t.Fatalf("%s: %v", step, err)
		}
	}
	shot := func(name string) {
		t.Helper()
		var png []byte
		run("screenshot "+name, chromedp.FullScreenshot(&png, 100))
		if err := os.WriteFile(filepath.Join(shots, name+".png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ink := func(sel string) int {
		t.Helper()
		var n int
		run("read "+sel, chromedp.WaitVisible(sel+`[data-drawn="1"]`, chromedp.ByQuery),
			chromedp.Evaluate(fmt.Sprintf(canvasInk, sel+" canvas"), &n))
		if n < 2000 {
			t.Errorf("%s: the chart painted %d pixels", sel, n)
		}
		return n
	}
	location := func(want string) {
		t.Helper()
		var loc string
		run("location", chromedp.Location(&loc))
		if !strings.HasPrefix(loc, base+want) {
			t.Errorf("at %s, want %s%s", loc, base, want)
		}
	}
	text := func(sel string) string {
		t.Helper()
		var s string
		run("text of "+sel, chromedp.WaitVisible(sel, chromedp.ByQuery), chromedp.Text(sel, &s, chromedp.ByQuery))
		return s
	}

	// The list: open incidents first, every one of the scenario's.
	var rows int
	run("incidents", chromedp.Navigate(base+"/"), chromedp.WaitVisible("#incidents", chromedp.ByQuery),
		chromedp.Evaluate(`document.querySelectorAll('#incidents tbody tr').length`, &rows))
	if rows != 6 {
		t.Errorf("the list shows %d incidents, want the scenario's 6", rows)
	}
	if list := text("#incidents"); !strings.Contains(list, "v1.1.0") || !strings.Contains(list, "errors") {
		t.Errorf("the list lacks checkout's suspect or signal:\n%s", list)
	}
	shot("incidents")

	// Each alert format's link opens its incident's page.
	links := hooks.waitLinks(t)
	for _, format := range []string{"json", "slack", "pagerduty"} {
		l := links[format]
		if !strings.HasPrefix(l.url, base+"/incidents/") {
			t.Errorf("%s alert links to %s, want the UI's incident page under %s", format, l.url, base)
			continue
		}
		run(format+" link", chromedp.Navigate(l.url))
		id := text("#incident-id")
		want, _ := url.PathUnescape(strings.TrimPrefix(l.url, base+"/incidents/"))
		if id != want || (l.incident != "" && id != l.incident) {
			t.Errorf("%s link %s opened incident %q", format, l.url, id)
		}
	}

	// checkout's incident: chart, markers, suspects, the reason.
	run("list", chromedp.Navigate(base+"/?environment=production&service=checkout"), chromedp.WaitVisible("#incidents", chromedp.ByQuery))
	var ok bool
	run("open checkout", chromedp.Evaluate(fmt.Sprintf(clickRow, "v1.1.0"), &ok))
	if !ok {
		t.Fatal("no row of checkout's v1.1.0 incident in the filtered list")
	}
	ink("#chart-logs")
	location("/incidents/")
	if tl := text("#timeline"); !strings.Contains(tl, "first bad minute") || !strings.Contains(tl, "rollback to v1.0.0") ||
		!strings.Contains(tl, "v1.1.0") || !strings.Contains(tl, "resolved after 18m") {
		t.Errorf("timeline:\n%s", tl)
	}
	if ss := text("#suspects"); !strings.Contains(ss, "#1") || !strings.Contains(ss, "checkout v1.1.0") {
		t.Errorf("suspects:\n%s", ss)
	}
	text("#detection-reason")
	shot("incident-checkout")
	if *updateScreenshot {
		var png []byte
		run("README screenshot", chromedp.EmulateViewport(1200, 900), chromedp.CaptureScreenshot(&png))
		if err := os.MkdirAll("../../docs/img", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile("../../docs/img/ui-incident.png", png, 0o644); err != nil {
			t.Fatal(err)
		}
		run("viewport", chromedp.EmulateViewport(1280, 900))
	}

	// Its suspect's deploy page says why it is a change failure.
	run("suspect", chromedp.Click("#suspects a.deploy-link", chromedp.ByQuery))
	if why := text("#failure-reason"); !strings.Contains(why, "top suspect of incident") {
		t.Errorf("deploy page: %q", why)
	}
	location("/deploys/")
	shot("deploy-checkout")

	// ledger sent only request histograms: its page draws them.
	run("list again", chromedp.Click("#nav-incidents", chromedp.ByQuery), chromedp.WaitVisible("#incidents", chromedp.ByQuery))
	run("open ledger", chromedp.Evaluate(fmt.Sprintf(clickRow, "ledger"), &ok))
	if !ok {
		t.Fatal("no ledger row in the list")
	}
	ink("#chart-requests")
	shot("incident-ledger")

	// DORA: the nav link, then the scenario's day for the trend.
	run("dora", chromedp.Click("#nav-dora", chromedp.ByQuery), chromedp.WaitVisible("form.filters", chromedp.ByQuery))
	location("/dora")
	run("dora since", chromedp.Navigate(base+"/dora?since="+replay.T0.AddDate(0, 0, -7).Format(time.DateOnly)))
	if d := text("#dora"); !strings.Contains(d, "checkout") || !strings.Contains(d, "inventory") || !strings.Contains(d, "33.3%") {
		t.Errorf("dora table:\n%s", d)
	}
	ink("#chart-deploys")
	ink("#chart-cfr")
	shot("dora")

	// An unknown id is a 404 page, not a broken one.
	run("missing", chromedp.Navigate(base+missing))
	if msg := text("#error-message"); !strings.Contains(msg, "no incident") {
		t.Errorf("404 page says %q", msg)
	}
	shot("not-found")

	mu.Lock()
	defer mu.Unlock()
	for _, p := range problems {
		t.Errorf("browser: %s", p)
	}
	t.Logf("screenshots in %s", shots)
}

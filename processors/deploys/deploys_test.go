package deploys

import (
	"math/rand/v2"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC)

func dep(id, svc, env, ver string, min int, opts ...func(*Deploy)) Deploy {
	d := Deploy{ID: id, Service: svc, Environment: env, Version: ver, Type: "deploy", Status: "succeeded", At: t0.Add(time.Duration(min) * time.Minute)}
	for _, o := range opts {
		o(&d)
	}
	return d
}

func failed(d *Deploy)   { d.Status = "failed" }
func rollback(d *Deploy) { d.Type = "rollback" }

func TestLiveAtAndRollbacksAnyOrder(t *testing.T) {
	all := []Deploy{
		dep("a", "checkout", "production", "v1", 0),
		dep("b", "checkout", "production", "v2", 10),
		dep("c", "checkout", "production", "v3", 15, failed), // never live
		dep("d", "checkout", "production", "v1", 30),         // V1 -> V2 -> V1
		dep("e", "checkout", "production", "v1", 40),         // redeploy: not a rollback
		dep("f", "checkout", "production", "v4", 50),
		dep("g", "checkout", "production", "v4-hotfix", 60, rollback), // explicit
		dep("s", "checkout", "staging", "v2", 5),
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for round := 0; round < 20; round++ {
		x := NewIndex()
		for _, i := range rng.Perm(len(all)) {
			x.Add(all[i])
		}
		for _, tc := range []struct {
			min  int
			want string
		}{{-1, ""}, {0, "a"}, {12, "b"}, {16, "b"}, {30, "d"}, {45, "e"}, {70, "g"}} {
			d, ok := x.LiveAt("checkout", "production", t0.Add(time.Duration(tc.min)*time.Minute))
			got := ""
			if ok {
				got = d.ID
			}
			if got != tc.want {
				t.Fatalf("round %d: live at +%dm = %q, want %q", round, tc.min, got, tc.want)
			}
		}
		rbs := x.Rollbacks("checkout", "production")
		if len(rbs) != 2 || rbs[0].Of.ID != "b" || rbs[0].By.ID != "d" || rbs[1].Of.ID != "f" || rbs[1].By.ID != "g" {
			t.Fatalf("round %d: rollbacks %+v", round, rbs)
		}
		if got := x.Between("", "production", t0.Add(5*time.Minute), t0.Add(30*time.Minute)); len(got) != 2 || got[0].ID != "d" || got[1].ID != "b" {
			t.Fatalf("between: %v", got)
		}
	}
}

func TestAddReplacesByID(t *testing.T) {
	x := NewIndex()
	if !x.Add(dep("a", "s", "p", "v1", 0)) || x.Add(dep("a", "s", "p", "v1", 0)) {
		t.Fatal("first add must change, the same again must not")
	}
	if !x.Add(dep("a", "s", "p", "v1", 5)) {
		t.Fatal("a moved deploy must change")
	}
	if d, _ := x.LiveAt("s", "p", t0.Add(2*time.Minute)); d != nil {
		t.Fatalf("old position still live: %+v", d)
	}
}

func TestLeadTime(t *testing.T) {
	d := dep("a", "s", "p", "v1", 60)
	if _, ok := d.LeadTime(); ok {
		t.Fatal("lead time without commits")
	}
	d.FirstCommitAt = t0
	if lt, ok := d.LeadTime(); !ok || lt != time.Hour {
		t.Fatalf("lead time %v %v", lt, ok)
	}
	// The median over the commits shipped: one old commit among fresh
	// ones does not make the deploy slow; commits after the deploy are
	// left out.
	at := func(m int) time.Time { return t0.Add(time.Duration(m) * time.Minute) }
	for _, tc := range []struct {
		commits []time.Time
		want    time.Duration
	}{
		{[]time.Time{at(0)}, time.Hour},
		{[]time.Time{at(-1440), at(50), at(55)}, 10 * time.Minute},
		{[]time.Time{at(0), at(30)}, 45 * time.Minute},
		{[]time.Time{at(30), at(90)}, 30 * time.Minute},
	} {
		d.CommitTimes = tc.commits
		if lt, ok := d.LeadTime(); !ok || lt != tc.want {
			t.Errorf("commits %v: lead time %v, want %v", tc.commits, lt, tc.want)
		}
	}
}

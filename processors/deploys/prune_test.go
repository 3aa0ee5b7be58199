package deploys

import (
	"bytes"
	"encoding/gob"
	"fmt"
	"reflect"
	"testing"
	"time"
)

// rollbackIDs lists a key's rollbacks as "of>by".
func rollbackIDs(x *Index, svc, env string) []string {
	var out []string
	for _, r := range x.Rollbacks(svc, env) {
		out = append(out, r.Of.ID+">"+r.By.ID)
	}
	return out
}

// TestPruneKeepsRollbacks prunes history and checks that later deploys are
// judged as they would be with the whole history: the live deploy stays,
// and a deploy of a pruned version is still a rollback.
func TestPruneKeepsRollbacks(t *testing.T) {
	history := []Deploy{
		dep("a", "checkout", "production", "v1", 0),
		dep("b", "checkout", "production", "v2", 10),
		dep("c", "checkout", "production", "v3", 20, failed),
		dep("d", "checkout", "production", "v3", 30),
		dep("s", "checkout", "staging", "v9", 5),
	}
	for _, tc := range []struct {
		name    string
		next    []Deploy
		horizon int // minutes
		want    []string
	}{
		{"back to a pruned version", []Deploy{dep("e", "checkout", "production", "v1", 40)}, 35, []string{"d>e"}},
		{"new version", []Deploy{dep("e", "checkout", "production", "v4", 40)}, 35, nil},
		{"redeploy of the live one", []Deploy{dep("e", "checkout", "production", "v3", 40)}, 35, nil},
		{"explicit rollback", []Deploy{dep("e", "checkout", "production", "v3-fix", 40, rollback)}, 35, []string{"d>e"}},
		{"horizon before everything", []Deploy{dep("e", "checkout", "production", "v2", 40)}, -5, []string{"d>e"}},
		{"two steps", []Deploy{dep("e", "checkout", "production", "v4", 40), dep("f", "checkout", "production", "v2", 50)}, 35, []string{"e>f"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			full, pruned := NewIndex(), NewIndex()
			for _, d := range history {
				full.Add(d)
				pruned.Add(d)
			}
			dropped := pruned.Prune(t0.Add(time.Duration(tc.horizon)*time.Minute), nil)
			for _, d := range tc.next {
				full.Add(d)
				pruned.Add(d)
			}
			got := rollbackIDs(pruned, "checkout", "production")
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Fatalf("rollbacks after pruning %d: %v, want %v", dropped, got, tc.want)
			}
			// Every rollback the pruned index finds, the full one finds too.
			all := fmt.Sprint(rollbackIDs(full, "checkout", "production"))
			for _, r := range got {
				if !bytes.Contains([]byte(all), []byte(r)) {
					t.Fatalf("rollback %s not in the full history's %s", r, all)
				}
			}
			if d, ok := pruned.LiveAt("checkout", "production", t0.Add(39*time.Minute)); !ok || d.ID != "d" {
				t.Fatalf("live before the new deploys: %v", d)
			}
			if _, ok := pruned.LiveAt("checkout", "staging", t0.Add(time.Hour)); !ok {
				t.Fatal("staging's live deploy was pruned")
			}
		})
	}
}

func TestPruneKeep(t *testing.T) {
	x := NewIndex()
	for i := range 10 {
		x.Add(dep(fmt.Sprint(i), "checkout", "production", fmt.Sprintf("v%d", i), i*10))
	}
	n := x.Prune(t0.Add(95*time.Minute), func(d *Deploy) bool { return d.ID == "3" })
	if n != 8 || x.Len() != 2 {
		t.Fatalf("dropped %d, left %d; want 8 and 2", n, x.Len())
	}
	if _, ok := x.Get("3"); !ok {
		t.Fatal("a kept deploy was dropped")
	}
	if _, ok := x.Get("9"); !ok {
		t.Fatal("the live deploy was dropped")
	}
}

func TestPastVersionsBounded(t *testing.T) {
	x := NewIndex()
	for i := range MaxPastVersions + 50 {
		x.Add(dep(fmt.Sprint(i), "checkout", "production", fmt.Sprintf("v%d", i), i))
		x.Prune(t0.Add(time.Duration(i)*time.Minute), nil)
	}
	if n := len(x.past[key{"checkout", "production"}]); n != MaxPastVersions {
		t.Fatalf("%d past versions, want %d", n, MaxPastVersions)
	}
	// The newest are kept: a deploy of a recent version is a rollback.
	x.Add(dep("r", "checkout", "production", fmt.Sprintf("v%d", MaxPastVersions+40), 10000))
	if got := rollbackIDs(x, "checkout", "production"); len(got) != 1 {
		t.Fatalf("rollbacks %v", got)
	}
}

// TestSnapshotRoundTrip restores an index through gob and checks that it
// holds the same and answers the same on further deploys.
func TestSnapshotRoundTrip(t *testing.T) {
	lead := 3 * time.Hour
	for _, tc := range []struct {
		name    string
		deploys []Deploy
		horizon int
		next    []Deploy
	}{
		{"empty", nil, 0, []Deploy{dep("a", "checkout", "production", "v1", 0)}},
		{"full", []Deploy{
			dep("a", "checkout", "production", "v1", 0, func(d *Deploy) { d.CommitTimes = []time.Time{t0.Add(-time.Hour)}; d.FirstCommitAt = t0.Add(-time.Hour) }),
			dep("b", "checkout", "production", "v2", 10, func(d *Deploy) { d.Attributes = map[string]string{"k": "v"}; d.URL = "https://ci/b" }),
			dep("c", "cart", "production", "v1", 12, func(d *Deploy) { d.StoredLead = &lead }),
		}, -10, []Deploy{dep("d", "checkout", "production", "v1", 20)}},
		{"pruned", []Deploy{
			dep("a", "checkout", "production", "v1", 0),
			dep("b", "checkout", "production", "v2", 10),
			dep("c", "checkout", "production", "v3", 20),
		}, 25, []Deploy{dep("d", "checkout", "production", "v1", 30), dep("e", "checkout", "production", "v2", 40)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			x := NewIndex()
			for _, d := range tc.deploys {
				x.Add(d)
			}
			x.Prune(t0.Add(time.Duration(tc.horizon)*time.Minute), nil)
			var buf bytes.Buffer
			if err := gob.NewEncoder(&buf).Encode(x.Snapshot()); err != nil {
				t.Fatal(err)
			}
			var st State
			if err := gob.NewDecoder(&buf).Decode(&st); err != nil {
				t.Fatal(err)
			}
			y := Restore(st)
			if !reflect.DeepEqual(normalize(x.Snapshot()), normalize(y.Snapshot())) {
				t.Fatalf("restored %+v\nwant %+v", y.Snapshot(), x.Snapshot())
			}
			for _, d := range tc.next {
				x.Add(d)
				y.Add(d)
			}
			if a, b := fmt.Sprint(rollbackIDs(x, "checkout", "production")), fmt.Sprint(rollbackIDs(y, "checkout", "production")); a != b {
				t.Fatalf("rollbacks after restore %s, want %s", b, a)
			}
			for _, id := range []string{"a", "c"} {
				dx, okx := x.Get(id)
				dy, oky := y.Get(id)
				if okx != oky {
					t.Fatalf("%s: present %v after restore, want %v", id, oky, okx)
				}
				if okx {
					lx, kx := dx.LeadTime()
					ly, ky := dy.LeadTime()
					if lx != ly || kx != ky {
						t.Fatalf("%s: lead time %v %v, want %v %v", id, ly, ky, lx, kx)
					}
				}
			}
		})
	}
}

// normalize makes gob's nil-versus-empty differences and time locations
// compare equal.
func normalize(st State) State {
	for i := range st.Deploys {
		d := &st.Deploys[i]
		d.At = d.At.UTC()
		d.FirstCommitAt = d.FirstCommitAt.UTC()
		if len(d.CommitTimes) == 0 {
			d.CommitTimes = nil
		}
		for j := range d.CommitTimes {
			d.CommitTimes[j] = d.CommitTimes[j].UTC()
		}
		if len(d.Attributes) == 0 {
			d.Attributes = nil
		}
	}
	for i := range st.Past {
		for j := range st.Past[i].At {
			st.Past[i].At[j] = st.Past[i].At[j].UTC()
		}
	}
	return st
}

package main

import (
	"bufio"
	"encoding/json"
	"net"
	"os"
	"slices"
	"strings"
	"testing"
)

// dockerStage is what the test reads of the Dockerfile's final stage.
type dockerStage struct {
	entrypoint, cmd []string
	env             map[string]string
	expose          []string
	copies          []string // COPY destinations
}

// parseDockerfile reads the final stage of a Dockerfile: instructions
// joined across line continuations, comments skipped. ENTRYPOINT and CMD
// must be in exec (JSON) form, which is what makes signals reach faultline.
func parseDockerfile(t *testing.T, path string) dockerStage {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []string
	var cur strings.Builder
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(l, "#") || (l == "" && cur.Len() == 0) {
			continue
		}
		if c, ok := strings.CutSuffix(l, `\`); ok {
			cur.WriteString(c + " ")
			continue
		}
		cur.WriteString(l)
		lines = append(lines, cur.String())
		cur.Reset()
	}
	var s dockerStage
	for _, l := range lines {
		instr, args, _ := strings.Cut(l, " ")
		args = strings.TrimSpace(args)
		switch strings.ToUpper(instr) {
		case "FROM":
			s = dockerStage{env: map[string]string{}}
		case "ENV":
			for _, kv := range strings.Fields(args) {
				k, v, ok := strings.Cut(kv, "=")
				if !ok {
					t.Fatalf("ENV %s: want KEY=value pairs", args)
				}
				s.env[k] = v
			}
		case "ENTRYPOINT", "CMD":
			var list []string
			if err := json.Unmarshal([]byte(args), &list); err != nil {
				t.Fatalf("%s %s: not the exec form (a JSON array): %v", instr, args, err)
			}
			if strings.ToUpper(instr) == "CMD" {
				s.cmd = list
			} else {
				s.entrypoint = list
			}
		case "EXPOSE":
			s.expose = append(s.expose, strings.Fields(args)...)
		case "COPY":
			f := strings.Fields(args)
			s.copies = append(s.copies, f[len(f)-1])
		}
	}
	return s
}

// TestDockerfile: there is no container engine here, so the test reads
// deploy/Dockerfile as one would: its default command is a faultline role
// whose settings, as the image's ENV gives them, pass faultline check; every
// FAULTLINE_* variable it sets is a setting faultline knows; every role
// that serves reaches its listeners from outside the container on an
// exposed port; and .dockerignore keeps local state out of the build.
func TestDockerfile(t *testing.T) {
	s := parseDockerfile(t, "../../deploy/Dockerfile")
	if !slices.Equal(s.entrypoint, []string{"/faultline"}) || !slices.Contains(s.copies, "/faultline") {
		t.Fatalf("ENTRYPOINT %q, copies %q: want the faultline binary copied to /faultline as the entrypoint", s.entrypoint, s.copies)
	}
	if len(s.cmd) != 1 {
		t.Fatalf("CMD %q: want one role", s.cmd)
	}
	def, ok := roles[s.cmd[0]]
	if !ok {
		t.Fatalf("CMD %q: not a faultline role", s.cmd[0])
	}

	ss, err := settings()
	if err != nil {
		t.Fatal(err)
	}
	for k := range s.env {
		if strings.HasPrefix(k, envPrefix+"_") && !slices.ContainsFunc(ss, func(x setting) bool { return x.Key == k }) {
			t.Errorf("ENV %s: not a faultline setting (faultline config lists them)", k)
		}
	}

	// The default command with the image's settings alone (run beside an
	// external ClickHouse, as the header says), then each role a
	// deployment runs, given what it joins.
	joined := map[string]string{"FAULTLINE_NATS_URL": "nats://nats:4222", "FAULTLINE_CLICKHOUSE_ADDR": "clickhouse:9000"}
	cases := []struct {
		role  string
		extra map[string]string
	}{{def.name, map[string]string{"FAULTLINE_CLICKHOUSE_ADDR": "clickhouse:9000"}}}
	for _, r := range []string{"gateway", "worker", "correlator", "migrate"} {
		cases = append(cases, struct {
			role  string
			extra map[string]string
		}{r, joined})
	}
	for _, tc := range cases {
		t.Run(tc.role, func(t *testing.T) {
			clearEnv(t)
			for k, v := range s.env {
				t.Setenv(k, v)
			}
			for k, v := range tc.extra {
				t.Setenv(k, v)
			}
			for v, addr := range checkedListeners(t, roles[tc.role], "in the image", false) {
				host, port, _ := net.SplitHostPort(addr)
				if host != "0.0.0.0" && host != "" && host != "::" {
					t.Errorf("%s=%s: unreachable from outside the container", v, addr)
				}
				if !slices.Contains(s.expose, port) {
					t.Errorf("%s=%s: port %s is not in EXPOSE %v", v, addr, port, s.expose)
				}
			}
		})
	}

	raw, err := os.ReadFile("../../.dockerignore")
	if err != nil {
		t.Fatal(err)
	}
	var ignored []string
	for _, l := range strings.Split(string(raw), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			ignored = append(ignored, strings.Trim(l, "/"))
		}
	}
	for _, p := range []string{".cache", ".data", "bin", ".git"} {
		if !slices.Contains(ignored, p) {
			t.Errorf(".dockerignore does not keep %s out of the build context", p)
		}
	}
}

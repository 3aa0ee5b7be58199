package dora

import "testing"

func f(v float64) *float64 { return &v }

func TestBands(t *testing.T) {
	for _, tc := range []struct {
		name string
		got  Band
		want Band
	}{
		{"cfr 5% is elite", FailureRateBand(f(0.05)), Elite},
		{"cfr 5.1% is high", FailureRateBand(f(0.051)), High},
		{"cfr 10% is high", FailureRateBand(f(0.10)), High},
		{"cfr 15% is medium", FailureRateBand(f(0.15)), Medium},
		{"cfr 16% is low", FailureRateBand(f(0.16)), Low},
		{"cfr unknown", FailureRateBand(nil), None},
		{"restore 59m elite", RestoreBand(f(59 * 60)), Elite},
		{"restore 1h high", RestoreBand(f(3600)), High},
		{"restore 1d medium", RestoreBand(f(86400)), Medium},
		{"restore 7d low", RestoreBand(f(7 * 86400)), Low},
		{"lead 23h elite", LeadTimeBand(f(23 * 3600)), Elite},
		{"lead 6d high", LeadTimeBand(f(6 * 86400)), High},
		{"lead 29d medium", LeadTimeBand(f(29 * 86400)), Medium},
		{"lead 30d low", LeadTimeBand(f(30 * 86400)), Low},
		{"freq 2/day elite", FrequencyBand(10, 2), Elite},
		{"freq weekly high", FrequencyBand(2, 1.0/7), High},
		{"freq monthly medium", FrequencyBand(1, 1.0/30), Medium},
		{"freq rarer low", FrequencyBand(1, 1.0/90), Low},
		{"freq none", FrequencyBand(0, 0), None},
	} {
		if tc.got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.name, tc.got, tc.want)
		}
	}
}

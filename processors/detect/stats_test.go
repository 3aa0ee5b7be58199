package detect

import (
	"math"
	"math/big"
	"math/rand/v2"
	"testing"
)

// Reference values: testdata/stats/ref.py (Python 3, standard library
// only), independently of this package. Each tail's first term is exact
// (math.comb / math.factorial of the exact binary value of the float64
// parameter, or Stirling's series with exact Bernoulli numbers to B_40 for
// factorials above 10^5, error < 1e-190), its logarithm and the remaining
// terms, by their exact ratios, are in decimal.Decimal at 60 digits until a
// term is below 1e-50 of the sum; the small cases are also summed as exact
// Fractions by the script and agree to 1e-40. z-test values: erfc by its
// Taylor series at 400 digits. Values are printed to 20 digits; lnWant is
// the natural log of the exact value, so tails beyond float64 can still be
// checked (they must come back as exactly 0).

const (
	pTol  = 1e-10 // relative, for representable p-values (the target is ~1e-9)
	lnTol = 1e-6  // relative, on ln p, for subnormal results
)

// checkP compares a p-value with a reference given as value and ln value.
func checkP(t *testing.T, name string, got, want, lnWant float64) {
	t.Helper()
	if math.IsNaN(got) || got < 0 || got > 1 {
		t.Errorf("%s = %v, outside [0, 1]", name, got)
		return
	}
	switch {
	case lnWant < -745.2: // below half the smallest subnormal: must round to 0
		if got != 0 {
			t.Errorf("%s = %v, want 0 (ln p = %v underflows)", name, got, lnWant)
		}
	case lnWant < -708.4: // subnormal: a few digits, compare in log space
		if d := math.Abs(math.Log(got) - lnWant); !(d <= lnTol*math.Abs(lnWant)) {
			t.Errorf("%s: ln p = %v, want %v", name, math.Log(got), lnWant)
		}
	default:
		if e := math.Abs(got-want) / want; !(e <= pTol) {
			t.Errorf("%s = %.17g, want %.17g (relative error %.2g)", name, got, want, e)
		}
		if lnWant != 0 {
			if d := math.Abs(math.Log(got) - lnWant); !(d <= lnTol*math.Abs(lnWant)) {
				t.Errorf("%s: ln p = %v, want %v", name, math.Log(got), lnWant)
			}
		}
	}
}

func TestBinomialUpperTail(t *testing.T) {
	inf := math.Inf(-1)
	cases := []struct {
		k, n         int64
		p            float64
		want, lnWant float64
	}{
		// ref.py: typical detection cases
		{30, 200, 0.05, 8.7092709439800058064e-8, -1.6256292659923075275e1},
		{3, 5, 0.001, 9.9850060000000006233e-9, -1.8422181269177461068e1},
		{1, 1, 0.05, 5.0000000000000002776e-2, -2.9957322735539909379}, // one record
		{1, 1, 0.999, 9.9899999999999999911e-1, -1.0005003335835343892e-3},
		{5, 200, 0.05, 9.7355319999087990013e-1, -2.6802807495725658626e-2},  // below the mode
		{10, 200, 0.05, 5.4529019131918074185e-1, -6.0643716488991213022e-1}, // at the mode
		{11, 200, 0.05, 4.1693281791882824917e-1, -8.7483017827096649542e-1},
		{10, 10, 0.5, 9.7656250000000000000e-4, -6.9314718055994530942}, // k == n
		{7, 10, 0.5, 1.7187500000000000000e-1, -1.7609878105613013124},
		{195, 200, 0.99, 9.8397709309082239541e-1, -1.6152661580098116026e-2},
		{12, 100000, 0.0001, 3.0321816635575149408e-1, -1.1933027115874336468},
		{5400, 100000, 0.05, 5.0829628293159058188e-9, -1.9097371511253631677e1},
		{90, 100, 0.5, 1.5316450877189925665e-17, -3.8717604202398855185e1},
		{1, 1000000, 1e-12, 9.9999950000066664601e-7, -1.3815511057963732458e1},
		// ref.py: extreme tails
		{60, 200, 0.05, 5.2823892537399315828e-30, -6.7413174284277038002e1},
		{80, 200, 0.05, 3.1361238010092808447e-50, -1.1398626707063068003e2},
		{400, 100000, 0.001, 4.9341256921931003911e-113, -2.5859594001583974970e2},
		{150, 300, 0.01, 2.0973677917615605420e-212, -4.8740735658870634919e2},
		{200, 200, 0.05, 6.2230152778612107965e-261, -5.9914645471079818758e2}, // k == n
		{100, 100, 0.001, 1.0000000000000020817e-300, -6.9077552789821370312e2},
		{1, 10, 1e-300, 1.0000000000000000251e-299, -6.8847294280521965950e2},
		// ref.py: big n
		{252000, 5000000, 0.05, 2.0833983258556520388e-5, -1.0778925093965912903e1},
		{249800, 5000000, 0.05, 6.5952297671946081125e-1, -4.1623846782670833468e-1},
		{260000, 5000000, 0.05, 9.9669416221669147853e-93, -2.1184113986958985977e2},
		{100500, 10000000, 0.01, 5.6287092046379313122e-2, -2.8772900410577390829},
		{5001000, 10000000, 0.5, 2.6364792810332189887e-1, -1.3331406715484959503},
		// ref.py: variance > 1e8, the saddle-point branch
		{500079057, 1000000000, 0.5, 2.8669307384191304477e-7, -1.5064853622556389707e1},
		{500001000, 1000000000, 0.5, 4.7479807604672928733e-1, -7.4486566838893406650e-1},
		{499990000, 1000000000, 0.5, 7.3646570028456250845e-1, -3.0589261540009345428e-1},
		// exact by definition
		{2, 1000, 1e-300, 0, math.Log(499500) - 600*math.Ln10}, // 5e-595: underflows to 0
		{1000, 1000, 0.01, 0, -1000 * math.Ln10 * 2},
		{0, 0, 0.5, 1, 0}, // no traffic
		{1, 0, 0.5, 0, inf},
		{0, 10, 0.3, 1, 0}, // k == 0
		{-3, 10, 0.3, 1, 0},
		{11, 10, 0.3, 0, inf}, // k > n
		{1, 10, 0, 0, inf},    // p == 0
		{0, 10, 0, 1, 0},
		{10, 10, 1, 1, 0}, // p == 1
		{1, 10, 1, 1, 0},
		{1, 1, 0.5, 0.5, -math.Ln2},
		// invalid input: p-value 1
		{3, 10, math.NaN(), 1, 0},
		{3, 10, -0.1, 1, 0},
		{3, 10, 1.5, 1, 0},
		{3, 10, math.Inf(1), 1, 0},
		{3, -10, 0.5, 1, 0},
		{math.MaxInt64, math.MaxInt64, 0.5, 0, -math.MaxInt64 * math.Ln2},
		{math.MinInt64, math.MaxInt64, 0.5, 1, 0},
	}
	for _, c := range cases {
		got := BinomialUpperTail(c.k, c.n, c.p)
		if c.want == 0 && math.IsInf(c.lnWant, -1) {
			if got != 0 {
				t.Errorf("BinomialUpperTail(%d, %d, %v) = %v, want 0", c.k, c.n, c.p, got)
			}
			continue
		}
		checkP(t, "BinomialUpperTail", got, c.want, c.lnWant)
		if t.Failed() {
			t.Logf("case %+v", c)
		}
	}
}

type fisherCase struct {
	a, n1, b, n2 int64
	want, lnWant float64
}

// fisherRef: ref.py, exact hypergeometric sums.
var fisherRef = []fisherCase{
	{41, 100, 5, 900, 1.5531082737502817315e-39, -8.9360560365939233359e1}, // canary
	{1, 1, 0, 50, 1.9607843137254901961e-2, -3.9318256327243257716},        // a version with a single record
	{1, 1, 1, 100, 1.9801980198019801980e-2, -3.9219733362813141415},
	{5, 100, 1, 1, 1.0000000000000000000, 0},
	{1, 1, 1, 1, 1.0000000000000000000, 0},
	{1, 2, 0, 1, 6.6666666666666666667e-1, -4.0546510810816438198e-1},
	{5, 5, 0, 5, 3.9682539682539682540e-3, -5.5294290875114233067},
	{3, 10, 3, 10, 6.8575851393188854489e-1, -3.7722973373746621159e-1},
	{2, 10, 5, 10, 9.7136222910216718266e-1, -2.9055832776662898274e-2},
	{30, 100, 0, 100, 7.1695512544365345187e-11, -2.3358592956831588562e1},
	{50, 100, 0, 100, 2.2229697512078616248e-19, -4.2950272739191331561e1},
	{50, 100, 5, 900, 2.8450205265585041414e-50, -1.1408368436719096523e2},
	{67, 1000, 20, 9000, 4.4214395442617189987e-50, -1.1364278931789074935e2},
	{350, 350, 0, 350, 6.3061906872871968107e-210, -4.8170133772905962083e2},
	{60, 10000, 5000, 990000, 1.0583094674904097301e-1, -2.2459122999745270198},
	{45, 10000, 5000, 990000, 7.9891731236694287204e-1, -2.2449782747365780430e-1},
	{500, 100000, 4500, 900000, 5.0693795817371301271e-1, -6.7936665334487952321e-1},
	{600, 10000, 5000, 990000, 0, -9.2581196813925441891e2}, // 8.4e-403: underflows to 0
}

func TestFisherGreater(t *testing.T) {
	cases := append([]fisherCase{
		{10, 10, 0, 10, 1.0 / 184756, -math.Log(184756)}, // 1/C(20,10)
		{0, 0, 0, 0, 1, 0}, // no traffic
		{0, 100, 0, 100, 1, 0},
		{0, 100, 7, 100, 1, 0},
		{1, 1, 0, 0, 1, 0}, // empty group B
		{0, 0, 1, 1, 1, 0},
		{-1, 10, 0, 10, 1, 0}, // inconsistent tables
		{11, 10, 0, 10, 1, 0},
		{1, 10, 11, 10, 1, 0},
		{1, 10, -1, 10, 1, 0},
		{1, -10, 0, 10, 1, 0},
		{math.MaxInt64, math.MaxInt64, 0, math.MaxInt64, 0, -1e20},
	}, fisherRef...)
	for _, c := range cases {
		checkP(t, "FisherGreater", FisherGreater(c.a, c.n1, c.b, c.n2), c.want, c.lnWant)
		if t.Failed() {
			t.Logf("case %+v", c)
		}
	}
}

func TestProportionGreater(t *testing.T) {
	// Small tables: the Fisher values.
	for _, c := range fisherRef {
		n := c.n1 + c.n2
		m := c.a + c.b
		small := n <= 10000 || float64(min(c.n1, c.n2))*float64(min(m, n-m))/float64(n) < 5
		if !small {
			continue
		}
		checkP(t, "ProportionGreater", ProportionGreater(c.a, c.n1, c.b, c.n2), c.want, c.lnWant)
	}
	// Large tables: ref.py, the pooled z-test.
	for _, c := range []fisherCase{
		{600, 20000, 5000, 200000, 9.3193860927880778799e-6, -1.1583413801308813445e1},   // z=4.280603
		{60, 2000, 5000, 200000, 7.7259558859424488623e-2, -2.5605846315787796006},       // z=1.423749
		{520, 10000, 5000, 100000, 1.9120773603757907440e-1, -1.6543948187357486713},     // z=0.873454
		{450, 10000, 5000, 100000, 9.8598544460567447883e-1, -1.4113686551672430355e-2},  // z=-2.196879
		{3000, 10000, 1000, 10000, 4.1500862855982613760e-274, -6.2948518635463163068e2}, // z=35.355339
	} {
		// Erfc's own relative error grows with z (~1e-13 at z = 35).
		checkP(t, "ProportionGreater", ProportionGreater(c.a, c.n1, c.b, c.n2), c.want, c.lnWant)
		if t.Failed() {
			t.Logf("case %+v", c)
		}
	}
	// Large n but an expected cell below 5: Fisher.
	for _, c := range [][4]int64{{3, 50000, 0, 50000}, {4, 5000, 0, 5001}, {1, 1, 0, 20000}, {20000, 20000, 0, 2}} {
		if got, want := ProportionGreater(c[0], c[1], c[2], c[3]), FisherGreater(c[0], c[1], c[2], c[3]); got != want {
			t.Errorf("ProportionGreater%v = %v, want Fisher's %v", c, got, want)
		}
	}
	for _, c := range [][4]int64{{0, 0, 0, 0}, {-1, 5, 0, 5}, {6, 5, 0, 5}, {0, 5, 6, 5}, {1, 1, 0, 0}, {0, 20000, 0, 20000}, {20000, 20000, 20000, 20000}} {
		if got := ProportionGreater(c[0], c[1], c[2], c[3]); got != 1 {
			t.Errorf("ProportionGreater%v = %v, want 1", c, got)
		}
	}
}

// ratBinomialTail is P(X >= k) for X ~ Binomial(n, p) in exact integers:
// with p = P/D exactly, the sum of C(n,j) P^j (D-P)^(n-j), over D^n.
func ratBinomialTail(k, n int64, p float64) float64 {
	pr := new(big.Rat).SetFloat64(p)
	pn, d := pr.Num(), pr.Denom()
	qn := new(big.Int).Sub(d, pn)
	sum := new(big.Int)
	for j := max(k, 0); j <= n; j++ {
		t := new(big.Int).Binomial(n, j)
		t.Mul(t, new(big.Int).Exp(pn, big.NewInt(j), nil))
		sum.Add(sum, t.Mul(t, new(big.Int).Exp(qn, big.NewInt(n-j), nil)))
	}
	f, _ := new(big.Rat).SetFrac(sum, new(big.Int).Exp(d, big.NewInt(n), nil)).Float64()
	return f
}

// ratFisher is the hypergeometric tail in exact rationals.
func ratFisher(a, n1, b, n2 int64) float64 {
	n, m := n1+n2, a+b
	num := new(big.Int)
	for x := a; x <= min(n1, m); x++ {
		t := new(big.Int).Binomial(m, x)
		num.Add(num, t.Mul(t, new(big.Int).Binomial(n-m, n1-x)))
	}
	f, _ := new(big.Rat).SetFrac(num, new(big.Int).Binomial(n, n1)).Float64()
	return f
}

// Every k of small random cases against exact rational sums (a second,
// in-process reference that covers both summation directions and the
// switch between them).
func TestSmallCasesExact(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	ps := []float64{1e-9, 0.001, 0.05, 0.3, 0.5, 0.77, 0.999}
	for range 60 {
		n := rng.Int64N(80)
		p := ps[rng.IntN(len(ps))]
		if rng.IntN(2) == 0 {
			p = rng.Float64()
		}
		for k := int64(0); k <= n+1; k++ {
			got, want := BinomialUpperTail(k, n, p), ratBinomialTail(k, n, p)
			if want > 1e-300 && math.Abs(got-want) > 1e-12*want {
				t.Errorf("BinomialUpperTail(%d, %d, %v) = %.17g, exact %.17g", k, n, p, got, want)
			}
		}
	}
	for range 300 {
		n1, n2 := rng.Int64N(60), rng.Int64N(60)
		a, b := rng.Int64N(n1+1), rng.Int64N(n2+1)
		got, want := FisherGreater(a, n1, b, n2), ratFisher(a, n1, b, n2)
		if math.Abs(got-want) > 1e-12*want {
			t.Errorf("FisherGreater(%d, %d, %d, %d) = %.17g, exact %.17g", a, n1, b, n2, got, want)
		}
	}
}

// The saddle-point approximation that takes over above tailMaxVar, checked
// against the exact sums run beyond it: its error shrinks with the
// variance, ~1e-11 at 1e6 to 1e7 and under 1e-12 from ~1e8 on.
func TestSaddleAgainstExact(t *testing.T) {
	for _, c := range []struct {
		n, p float64
		tol  float64
	}{{4e6, 0.5, 1e-10}, {4e7, 0.3, 1e-10}, {4e8, 0.25, 5e-12}, {1e9, 0.1, 5e-12}} {
		sd := math.Sqrt(c.n * c.p * (1 - c.p))
		for _, z := range []float64{-3, -1, -1e-3, 0, 0.5, 2, 5, 10, 30} {
			k := math.Round(c.n*c.p + z*sd)
			got := binomialSaddle(k, c.n, c.p, 1-c.p)
			want := exactBinomialTail(int64(k), int64(c.n), c.p)
			if e := math.Abs(got-want) / want; !(e <= c.tol) {
				t.Errorf("binomialSaddle(%v, %v, %v) = %.17g, exact %.17g (%.2g)", k, c.n, c.p, got, want, e)
			}
		}
	}
}

// exactBinomialTail runs the exact summation whatever the variance (for
// TestSaddleAgainstExact).
func exactBinomialTail(k, n int64, p float64) float64 {
	q := 1 - p
	nf, kf := float64(n), float64(k)
	s, t := 1.0, 1.0
	if kf > math.Floor((nf+1)*p) {
		for j := kf; j < nf; j++ {
			r := (nf - j) / (j + 1) * p / q
			t *= r
			s += t
			if r < 1 && t*r < tailEps*s*(1-r) {
				break
			}
		}
		return math.Exp(logDbinom(kf, nf, p, q) + math.Log(s))
	}
	for j := kf - 1; j > 0; j-- {
		r := j / (nf - j + 1) * q / p
		t *= r
		s += t
		if r < 1 && t*r < tailEps*s*(1-r) {
			break
		}
	}
	return 1 - math.Exp(logDbinom(kf-1, nf, p, q)+math.Log(s))
}

// Tails never increase with k, across the switch at the mode, the switch to
// the saddle point, and far into underflow.
func TestTailsMonotone(t *testing.T) {
	for _, c := range []struct {
		n int64
		p float64
	}{{200, 0.05}, {1000, 0.5}, {100000, 0.001}, {1000000000, 0.5}} {
		mean := float64(c.n) * c.p
		sd := math.Sqrt(mean * (1 - c.p))
		prev := 1.0
		for z := -6.0; z <= 40; z += 0.05 {
			k := int64(math.Round(mean + z*sd))
			got := BinomialUpperTail(k, c.n, c.p)
			if got > prev*(1+1e-12) {
				t.Fatalf("BinomialUpperTail(%d, %d, %v) = %v > %v at k-1", k, c.n, c.p, got, prev)
			}
			prev = got
		}
	}
}

func FuzzStats(f *testing.F) {
	f.Add(int64(30), int64(200), 0.05, int64(41), int64(100), int64(5), int64(900))
	f.Add(int64(0), int64(0), math.NaN(), int64(-1), int64(0), int64(0), int64(0))
	f.Add(int64(math.MaxInt64), int64(math.MaxInt64), 1e-300, int64(math.MaxInt64), int64(math.MaxInt64), int64(math.MaxInt64), int64(math.MaxInt64))
	f.Add(int64(5000100), int64(10000000), 0.5, int64(600), int64(10000), int64(5000), int64(990000))
	f.Fuzz(func(t *testing.T, k, n int64, p float64, a, n1, b, n2 int64) {
		isP := func(name string, v float64) {
			if !(v >= 0 && v <= 1) {
				t.Fatalf("%s = %v", name, v)
			}
		}
		bt := BinomialUpperTail(k, n, p)
		isP("BinomialUpperTail", bt)
		if k < math.MaxInt64 {
			if next := BinomialUpperTail(k+1, n, p); next > bt*(1+1e-9)+1e-300 {
				t.Fatalf("BinomialUpperTail(%d, %d, %v) = %v < %v at k+1", k, n, p, bt, next)
			}
		}
		isP("FisherGreater", FisherGreater(a, n1, b, n2))
		isP("ProportionGreater", ProportionGreater(a, n1, b, n2))

		// The same folded into the ranges the detector sees, where the exact
		// sums run: k <= n+1 <= 200000, 0 <= p < 1, consistent tables.
		sn := int64(uint64(n) % 200000)
		sk := int64(uint64(k) % uint64(sn+2))
		sp := math.Abs(p) - math.Floor(math.Abs(p))
		if st := BinomialUpperTail(sk, sn, sp); st < 0 || st > 1 || (sk <= sn && BinomialUpperTail(sk+1, sn, sp) > st*(1+1e-9)+1e-300) {
			t.Fatalf("BinomialUpperTail(%d, %d, %v) = %v, then %v", sk, sn, sp, st, BinomialUpperTail(sk+1, sn, sp))
		}
		fn1, fn2 := int64(uint64(n1)%100000), int64(uint64(n2)%100000)
		fa, fb := int64(uint64(a)%uint64(fn1+1)), int64(uint64(b)%uint64(fn2+1))
		ft := FisherGreater(fa, fn1, fb, fn2)
		isP("FisherGreater", ft)
		if fa < fn1 && fb > 0 { // one more error on A's side, one fewer on B's: no larger
			if next := FisherGreater(fa+1, fn1, fb-1, fn2); next > ft*(1+1e-9)+1e-300 {
				t.Fatalf("FisherGreater(%d, %d, %d, %d) = %v < %v with a+1, b-1", fa, fn1, fb, fn2, ft, next)
			}
		}
		isP("ProportionGreater", ProportionGreater(fa, fn1, fb, fn2))
	})
}

var benchSink float64

func BenchmarkBinomialUpperTail(b *testing.B) {
	for _, c := range []struct {
		name string
		k, n int64
		p    float64
	}{
		{"k30_n200", 30, 200, 0.05},
		{"k3_n5", 3, 5, 0.001},
		{"n1e5_far", 5400, 100000, 0.05},
		{"n1e5_near", 5100, 100000, 0.05},
		{"n1e5_below", 4900, 100000, 0.05},
		{"n1e5_worst", 50001, 100000, 0.5},
		{"n1e7", 100500, 10000000, 0.01},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				benchSink += BinomialUpperTail(c.k, c.n, c.p)
			}
		})
	}
}

func BenchmarkFisherGreater(b *testing.B) {
	for _, c := range []struct {
		name         string
		a, n1, b, n2 int64
	}{
		{"canary", 41, 100, 5, 900},
		{"single", 1, 1, 0, 50},
		{"n1e6", 60, 10000, 5000, 990000},
		{"n1e6_worst", 500, 100000, 4500, 900000},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				benchSink += FisherGreater(c.a, c.n1, c.b, c.n2)
			}
		})
	}
}

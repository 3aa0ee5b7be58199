// Statistical tests for the detector.
//
// Each answers "is this more than chance?" for one kind of signal:
//
//   - Baseline error-ratio anomaly: a key's errors in a minute against its
//     own baseline error ratio p is a binomial tail, BinomialUpperTail(k, n, p).
//   - Canary against the previous version: errors/records of the new
//     version against the old one is a 2x2 table, FisherGreater when it is
//     small and the pooled two-proportion z-test when it is large;
//     ProportionGreater picks.
//   - Latency: latency.go maps OTLP histograms (explicit or exponential
//     buckets, not samples) onto one fixed log-spaced grid and reads
//     quantiles off it (latQuantile); the test is again a binomial tail,
//     BinomialUpperTail on the requests slower than the baseline quantile's
//     grid bucket against the baseline's share of such requests (at least
//     1 - the quantile).
//
// Precision. Tail probabilities are sums of probability terms computed in
// log space with Loader's saddle-point form of the binomial density, and of
// the hypergeometric as a ratio of three binomial ones (C. Loader, "Fast and
// Accurate Computation of Binomial Probabilities", 2000; the method of R's
// dbinom/dhyper): Stirling error terms and the deviance bd0 instead of
// differences of math.Lgamma, which at n = 10^7 would each carry an
// absolute error of ~3e-8 and so a relative error of that size in the
// p-value. The first term is computed once; the others follow from exact
// term ratios, summed away from the mode until the rest is provably below
// 2^-56 of the sum. Relative error is 1e-12 or better (at most 6e-13
// against the references) for n up to 10^7 and p-values down to the
// float64 range; results under ~1e-308 become 0 rather than NaN. The
// reference values in stats_test.go come from exact rational arithmetic
// (testdata/stats/ref.py).
//
// Every function accepts any input: invalid counts or parameters give the
// p-value 1, never a panic or NaN.

package detect

import (
	"math"
)

const (
	// tailEps: summing stops once the rest of the tail is provably below
	// tailEps times the running sum.
	tailEps = 0x1p-56
	// tailMaxVar bounds the variance for which tails are summed exactly
	// (about 9 standard deviations of terms: <= 1e5 terms). Beyond it, far
	// outside the documented ranges (n*p*(1-p) <= 2.5e6 for n <= 10^7), a
	// saddle-point approximation keeps the cost constant.
	tailMaxVar = 1e8
	// tailMaxCount keeps counts exact in float64 and their sums in int64.
	tailMaxCount = 1 << 52
	lnSqrt2Pi    = 0.918938533204672741780329736405617639861397473637783412817 // ln(sqrt(2*pi))
)

// BinomialUpperTail returns P(X >= k) for X ~ Binomial(n, p): the p-value of
// seeing k or more errors among n records when the baseline error ratio is
// p. k <= 0 gives 1; k > n gives 0. Invalid n or p (n < 0, p NaN or outside
// [0, 1]) give 1.
//
// The tail is I_p(k, n-k+1) summed as terms of the density rather than by
// the incomplete-beta continued fraction: both need O(sqrt(n p (1-p)))
// steps near the mean, but the sum's first term comes from Loader's formula (accurate
// to ~1e-15 relative at any n) where the continued fraction's prefactor
// would need Lgamma(n+1) - Lgamma(k) - Lgamma(n-k+1), which loses ~1e-8 at
// n = 10^7. Below the mode it returns 1 - P(X <= k-1).
func BinomialUpperTail(k, n int64, p float64) float64 {
	if n < 0 || !(p >= 0 && p <= 1) || k <= 0 {
		return 1
	}
	if k > n {
		return 0
	}
	if p == 0 {
		return 0
	}
	if p == 1 {
		return 1
	}
	q := 1 - p
	nf := float64(n)
	kf := float64(k)
	if kf >= nf { // k == n, also once n is beyond float64's integers
		return pvalue(math.Exp(nf * math.Log(p)))
	}
	if nf*p*q > tailMaxVar {
		return binomialSaddle(kf, nf, p, q)
	}
	mode := math.Floor((nf + 1) * p)
	if kf > mode {
		// Terms decrease from k on: t(j+1)/t(j) = (n-j)/(j+1) * p/q < 1.
		pq := p / q
		s, t := 1.0, 1.0
		for j := kf; j < nf; j++ {
			r := (nf - j) / (j + 1) * pq
			t *= r
			s += t
			if r < 1 && t*r < tailEps*s*(1-r) {
				break
			}
		}
		return pvalue(math.Exp(logDbinom(kf, nf, p, q) + math.Log(s)))
	}
	// k <= mode: the upper tail is at least ~1/2; the lower tail
	// P(X <= k-1), whose terms decrease from k-1 down, is the small side.
	qp := q / p
	s, t := 1.0, 1.0
	for j := kf - 1; j > 0; j-- {
		r := j / (nf - j + 1) * qp
		t *= r
		s += t
		if r < 1 && t*r < tailEps*s*(1-r) {
			break
		}
	}
	return pvalue(1 - math.Exp(logDbinom(kf-1, nf, p, q)+math.Log(s)))
}

// FisherGreater is the one-sided Fisher exact test that group A's rate a/n1
// exceeds group B's rate b/n2 (a canary's errors/records against the
// previous version's): the hypergeometric tail P(X >= a) with margins n1, n2
// and a+b. An inconsistent table (a negative count, a > n1, b > n2) gives 1,
// and so does an empty group, which carries no evidence.
//
// The first term is Loader's hypergeometric density (a ratio of three
// binomial densities, as in R's dhyper); the rest follow by exact term
// ratios until they fall below 2^-56 of the sum. Exact for n1+n2 up to
// ~10^9; beyond a variance of 1e8 (n1+n2 > ~1.6e9) it returns the normal
// approximation with continuity correction.
func FisherGreater(a, n1, b, n2 int64) float64 {
	if a < 0 || b < 0 || a > n1 || b > n2 || a == 0 {
		return 1
	}
	nn := float64(n1) + float64(n2)
	m := float64(a) + float64(b)
	n1f, af := float64(n1), float64(a)
	// X ranges over [max(0, m-n2), min(n1, m)].
	lo := math.Max(0, m-float64(n2))
	hi := math.Min(n1f, m)
	if af <= lo {
		return 1
	}
	variance := n1f * float64(n2) / nn * m / nn * (nn - m) / (nn - 1)
	if variance > tailMaxVar || n1 > tailMaxCount || n2 > tailMaxCount {
		mean := n1f * m / nn
		return pvalue(0.5 * math.Erfc((af-0.5-mean)/math.Sqrt(2*variance)))
	}
	c := nn - m - n1f // t(x+1)/t(x) = (m-x)(n1-x) / ((x+1)(c+x+1))
	mode := math.Floor((n1f + 1) * (m + 1) / (nn + 2))
	p := n1f / nn
	q := float64(n2) / nn
	if af > mode {
		s, t := 1.0, 1.0
		for x := af; x < hi; x++ {
			r := (m - x) * (n1f - x) / ((x + 1) * (c + x + 1))
			t *= r
			s += t
			if r < 1 && t*r < tailEps*s*(1-r) {
				break
			}
		}
		return pvalue(math.Exp(logDhyper(af, n1f, m, nn, p, q) + math.Log(s)))
	}
	s, t := 1.0, 1.0
	for x := af - 1; x > lo; x-- {
		r := x * (c + x) / ((m - x + 1) * (n1f - x + 1))
		t *= r
		s += t
		if r < 1 && t*r < tailEps*s*(1-r) {
			break
		}
	}
	return pvalue(1 - math.Exp(logDhyper(af-1, n1f, m, nn, p, q)+math.Log(s)))
}

// ProportionGreater is the p-value that a/n1 exceeds b/n2, by the test that
// suits the table: FisherGreater when it is small (n1+n2 <= 10000, or any
// expected cell below 5, where the normal approximation is poor), else the
// one-sided pooled two-proportion z-test, 1 - Phi(z) by math.Erfc. An
// inconsistent table gives 1.
func ProportionGreater(a, n1, b, n2 int64) float64 {
	if a < 0 || b < 0 || a > n1 || b > n2 {
		return 1
	}
	nn := float64(n1) + float64(n2)
	m := float64(a) + float64(b)
	n1f, n2f := float64(n1), float64(n2)
	minRow, minCol := math.Min(n1f, n2f), math.Min(m, nn-m)
	if nn <= 10000 || minRow*minCol/nn < 5 {
		return FisherGreater(a, n1, b, n2)
	}
	pooled := m / nn
	se := math.Sqrt(pooled * (1 - pooled) * (1/n1f + 1/n2f))
	z := (float64(a)/n1f - float64(b)/n2f) / se
	return pvalue(0.5 * math.Erfc(z/math.Sqrt2))
}

// pvalue clamps rounding into [0, 1]; NaN, which no valid input produces,
// becomes the conservative 1.
func pvalue(x float64) float64 {
	if x != x || x > 1 {
		return 1
	}
	return max(x, 0)
}

// stirlerrTable holds stirlerr(n) = ln(n!) - ln(sqrt(2 pi n) (n/e)^n) for
// n = 0..15 (computed at 50 digits by testdata/stats/ref.py stirlerr; the
// same values as R's nmath/stirlerr.c).
var stirlerrTable = [16]float64{
	0,
	8.1061466795327258219670264e-2,
	4.1340695955409294093822081e-2,
	2.7677925684998339148789293e-2,
	2.0790672103765093111522772e-2,
	1.6644691189821192163194865e-2,
	1.3876128823070747998745727e-2,
	1.1896709945891770095055724e-2,
	1.0411265261972096497478567e-2,
	9.2554621827127329177286366e-3,
	8.3305634333628712564693187e-3,
	7.5736754879518407949720242e-3,
	6.9428401072095298656641527e-3,
	6.4089941880042070684396311e-3,
	5.9513701127588477356244160e-3,
	5.5547335519628013710386900e-3,
}

// stirlerr is the error of Stirling's formula for ln(n!), n a whole number
// >= 0: the table up to 15, then the asymptotic series 1/12n - 1/360n^3 +
// ..., with as many terms as float64 needs (Loader 2000, R's stirlerr).
func stirlerr(n float64) float64 {
	const (
		s0 = 1.0 / 12
		s1 = 1.0 / 360
		s2 = 1.0 / 1260
		s3 = 1.0 / 1680
		s4 = 1.0 / 1188
	)
	if n <= 15 {
		if n < 0 {
			return 0
		}
		return stirlerrTable[int(n)]
	}
	nn := n * n
	switch {
	case n > 500:
		return (s0 - s1/nn) / n
	case n > 80:
		return (s0 - (s1-s2/nn)/nn) / n
	case n > 35:
		return (s0 - (s1-(s2-s3/nn)/nn)/nn) / n
	}
	return (s0 - (s1-(s2-(s3-s4/nn)/nn)/nn)/nn) / n
}

// bd0 is the deviance term x ln(x/m) + m - x >= 0, by a series in
// v = (x-m)/(x+m) when x is near m, where the direct form cancels
// (Loader 2000).
func bd0(x, m float64) float64 {
	if x == 0 {
		return m
	}
	if math.Abs(x-m) < 0.1*(x+m) {
		v := (x - m) / (x + m)
		s := (x - m) * v
		ej := 2 * x * v
		v *= v
		for j := 3.0; j < 1000; j += 2 {
			ej *= v
			s1 := s + ej/j
			if s1 == s {
				return s1
			}
			s = s1
		}
		return s
	}
	r := x / m
	if r > 0 && !math.IsInf(r, 0) {
		return x*math.Log(r) + m - x
	}
	return x*(math.Log(x)-math.Log(m)) + m - x
}

// logDbinom is ln P(X = x) for X ~ Binomial(n, p), 0 <= x <= n whole,
// q = 1-p, 0 < p < 1, by Loader's saddle-point expansion.
func logDbinom(x, n, p, q float64) float64 {
	if x == 0 {
		if n == 0 {
			return 0
		}
		return n * math.Log1p(-p)
	}
	if x == n {
		return n * math.Log(p)
	}
	lc := stirlerr(n) - stirlerr(x) - stirlerr(n-x) - bd0(x, n*p) - bd0(n-x, n*q)
	return lc - lnSqrt2Pi - 0.5*(math.Log(x)+math.Log1p(-x/n))
}

// logDhyper is ln P(X = x) for the hypergeometric distribution of the
// successes X among n1 draws from nn items with m successes: the ratio
// Bin(x; m, p) Bin(n1-x; nn-m, p) / Bin(n1; nn, p) with p = n1/nn, q = n2/nn
// (any p works; this one keeps the three terms near their modes).
func logDhyper(x, n1, m, nn, p, q float64) float64 {
	return logDbinom(x, m, p, q) + logDbinom(n1-x, nn-m, p, q) - logDbinom(n1, nn, p, q)
}

// lrTail is the Lugannani-Rice saddle-point tail with Daniels' second
// continuity correction (Butler, Saddlepoint Approximations with
// Applications, 2007, sec. 1.2.4): P(X >= k) ~ 1 - Phi(w) - phi(w)(1/w - 1/u)
// with w = sign(s) sqrt(2 dev), u = 2 sinh(s/2) sqrt(k2), all at the saddle
// point s of k - 1/2 (k2: the second derivative of the cumulant generating
// function there). gamma is the skewness, for the limit w -> 0. Its
// relative error shrinks with the variance; it serves only the variances
// above tailMaxVar.
func lrTail(s, dev, k2, gamma float64) float64 {
	w := math.Copysign(math.Sqrt(2*dev), s)
	upper := 0.5 * math.Erfc(w/math.Sqrt2)
	phi := math.Exp(-0.5*w*w - lnSqrt2Pi)
	if math.Abs(w) < 1e-4 {
		return pvalue(upper - phi*gamma/6)
	}
	u := 2 * math.Sinh(s/2) * math.Sqrt(k2)
	return pvalue(upper - phi*(1/w-1/u))
}

func binomialSaddle(k, n, p, q float64) float64 {
	x := k - 0.5
	d := x - n*p // the saddle point: e^s = x q / ((n-x) p)
	s := math.Log1p(d/(n*p)) - math.Log1p(-d/(n*q))
	return lrTail(s, bd0(x, n*p)+bd0(n-x, n*q), x*(n-x)/n, (q-p)/math.Sqrt(n*p*q))
}

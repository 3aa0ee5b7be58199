#!/usr/bin/env python3
"""Reference values for processors/detect/stats_test.go.

Computed independently of the Go code, with the standard library only:

  * binomial and hypergeometric (Fisher) tails: the first term of the
    tail exactly as a rational (math.comb / math.factorial and the exact binary
    value of the float64 parameter via fractions.Fraction), its logarithm taken
    in decimal.Decimal at 60 digits, then the remaining terms by their exact
    term ratios in Decimal until a term falls below 1e-50 of the sum.  Above
    10^5, ln(n!) comes from Stirling's series with exact Bernoulli numbers to
    B_40 (error < 1e-190; checked against exact factorials near 10^5), since
    math.comb(10^7, 5*10^6) alone takes minutes.  Tails
    on the near side of the mode are 1 - (the other tail).  Small cases are
    also summed as exact Fractions and must agree to 1e-40 (self-check).
  * the z-test: erfc by its Taylor series in Decimal, with 100 digits more
    than the series cancels.

Run:  python3 ref.py        (prints the Go table rows pasted into stats_test.go)
      python3 ref.py stirlerr   (prints the stirlerr table used in stats.go)
"""

import math
import sys
from decimal import Decimal as D, getcontext, localcontext
from fractions import Fraction as F

getcontext().prec = 60
LN2 = D(2).ln()


def pi_dec():
    """Pi by the decimal module documentation's series, at the current precision."""
    with localcontext() as ctx:
        ctx.prec += 2
        three = D(3)
        lasts, t, s, n, na, d, da = 0, three, 3, 1, 0, 0, 24
        while s != lasts:
            lasts = s
            n, na = n + na, na + 8
            d, da = d + da, da + 32
            t = (t * n) / d
            s += t
    return +s


def ln_int(n):
    """ln of a positive integer of any size (keeps its top 250 bits)."""
    b = n.bit_length()
    s = max(0, b - 250)
    return D(n >> s).ln() + s * LN2


def bernoulli(m):
    """B_0..B_m as Fractions (Akiyama-Tanigawa)."""
    a, out = [], []
    for n in range(m + 1):
        a.append(F(1, n + 1))
        for j in range(n, 0, -1):
            a[j - 1] = j * (a[j - 1] - a[j])
        out.append(a[0])
    return out


BERN = bernoulli(40)


def ln_factorial(n):
    """ln(n!): exactly (via the integer) up to 10^5, else Stirling's series
    with exact Bernoulli numbers to B_40, whose error (< the first omitted
    term, ~B_42/(42*41*n^41)) is below 1e-190 there."""
    if n <= 100000:
        return ln_int(math.factorial(n))
    return ln_factorial_stirling(n)


def ln_factorial_stirling(n):
    with localcontext() as ctx:
        ctx.prec = 80
        dn = D(n)
        s = (dn + D("0.5")) * dn.ln() - dn + (2 * pi_dec()).ln() / 2
        for j in range(1, 21):
            b = BERN[2 * j]
            s += dec(b) / (D(2 * j) * D(2 * j - 1) * dn ** (2 * j - 1))
    return +s


def ln_comb(n, k):
    if n <= 100000:
        return ln_int(math.comb(n, k))
    return ln_factorial(n) - ln_factorial(k) - ln_factorial(n - k)


def ln_frac(x):
    x = F(x)
    return ln_int(x.numerator) - ln_int(x.denominator)


def dec(x):
    x = F(x)
    return D(x.numerator) / D(x.denominator)


def frac_to_ln(x):
    return ln_frac(x) if x > 0 else None


def out(ln):
    """(value, ln value) as Go literals; value 0 if it underflows float64."""
    if ln is None:
        return "0", "math.Inf(-1)"
    v = ln.exp()
    return fmt(v), fmt(ln)


def fmt(v):
    """A Go float literal with 20 significant digits."""
    if v == 0:
        return "0"
    mant, exp = format(v, ".19e").split("e")
    e = int(exp)
    return mant if e == 0 else "%se%d" % (mant, e)


def tail_sum(ln_first, ratio, start, stop, step):
    """ln of sum_{j} t_j from j=start by step while j != stop, t_{j+step}/t_j = ratio(j)."""
    s = D(1)
    t = D(1)
    j = start
    while j != stop:
        t *= ratio(j)
        j += step
        s += t
        if t < s * D("1e-50"):
            break
    return ln_first + s.ln()


# ---------------------------------------------------------------- binomial
def binom_upper(k, n, p):
    """ln P(X >= k), X ~ Binomial(n, p), p the exact value of a float64 (None if 0)."""
    p = F(p)
    q = 1 - p
    if k <= 0:
        return D(0)
    if k > n or p == 0:
        return None
    if p == 1:
        return D(0)
    lp, lq = ln_frac(p), ln_frac(q)
    pq = dec(p / q)
    qp = dec(q / p)

    def ln_term(j):
        return ln_comb(n, j) + j * lp + (n - j) * lq

    mode = math.floor((n + 1) * p)
    if k > mode:
        return tail_sum(ln_term(k), lambda j: D(n - j) / D(j + 1) * pq, k, n, 1)
    lower = tail_sum(ln_term(k - 1), lambda j: D(j) / D(n - j + 1) * qp, k - 1, 0, -1).exp()
    return (1 - lower).ln()


def binom_upper_exact(k, n, p):
    p = F(p)
    q = 1 - p
    return sum(math.comb(n, j) * p**j * q ** (n - j) for j in range(k, n + 1))


# ---------------------------------------------------------------- Fisher
def fisher_greater(a, n1, b, n2):
    N, m = n1 + n2, a + b
    lo, hi = max(0, m - n2), min(n1, m)
    if a <= lo:
        return D(0)

    def ln_term(x):
        return ln_comb(m, x) + ln_comb(N - m, n1 - x) - ln_comb(N, n1)

    mode = (n1 + 1) * (m + 1) // (N + 2)
    if a > mode:
        r = lambda x: D((m - x) * (n1 - x)) / D((x + 1) * (N - m - n1 + x + 1))
        return tail_sum(ln_term(a), r, a, hi, 1)
    r = lambda x: D(x * (N - m - n1 + x)) / D((m - x + 1) * (n1 - x + 1))
    lower = tail_sum(ln_term(a - 1), r, a - 1, lo, -1).exp()
    return (1 - lower).ln()


def fisher_exact(a, n1, b, n2):
    N, m = n1 + n2, a + b
    hi = min(n1, m)
    num = sum(math.comb(m, x) * math.comb(N - m, n1 - x) for x in range(a, hi + 1))
    return F(num, math.comb(N, n1))


# ---------------------------------------------------------------- normal tail
def normal_upper(z):
    """ln Q(z) = ln(erfc(z/sqrt 2)/2), erfc by Taylor series of erf at 400 digits."""
    with localcontext() as ctx:
        # The series cancels about x^2/ln(10) digits (its terms reach e^(x^2)),
        # and the result has about as many leading zeros: keep both plus 60.
        ctx.prec = 100 + int(float(z) ** 2 / math.log(10))
        pi = pi_dec()
        x = dec(z) / D(2).sqrt()
        # erf(x) = 2/sqrt(pi) * sum (-1)^n x^(2n+1) / (n! (2n+1))
        s, t, n = D(0), x, 0
        while True:
            term = t / (2 * n + 1)
            s += term
            if abs(term) < D(10) ** -(ctx.prec - 10):
                break
            n += 1
            t = -t * x * x / n
        erfc = 1 - 2 / pi.sqrt() * s
        v = (erfc / 2).ln()
    return +v


def ztest(a, n1, b, n2):
    """The pooled one-sided two-proportion z statistic, exactly (as a Decimal)."""
    with localcontext() as ctx:
        ctx.prec = 60
        P = F(a + b, n1 + n2)
        var = P * (1 - P) * (F(1, n1) + F(1, n2))
        z = dec(F(a, n1) - F(b, n2)) / dec(var).sqrt()
    return z


# ---------------------------------------------------------------- cases
BINOM = [
    (30, 200, 0.05), (3, 5, 0.001), (1, 1, 0.05), (1, 1, 0.999), (5, 200, 0.05), (10, 200, 0.05),
    (11, 200, 0.05), (10, 10, 0.5), (7, 10, 0.5), (195, 200, 0.99), (200, 200, 0.05),
    (60, 200, 0.05), (150, 300, 0.01), (100, 100, 0.001), (1, 1000000, 1e-12),
    (252000, 5000000, 0.05), (249800, 5000000, 0.05), (260000, 5000000, 0.05),
    (100500, 10000000, 0.01), (5001000, 10000000, 0.5), (12, 100000, 0.0001),
    (5400, 100000, 0.05), (400, 100000, 0.001), (90, 100, 0.5), (1, 10, 1e-300), (80, 200, 0.05),
    # variance > 1e8: the saddle-point branch
    (500079057, 1000000000, 0.5), (500001000, 1000000000, 0.5), (499990000, 1000000000, 0.5),
]
FISHER = [
    (41, 100, 5, 900), (1, 1, 0, 50), (5, 5, 0, 5), (3, 10, 3, 10), (2, 10, 5, 10), (30, 100, 0, 100),
    (50, 100, 0, 100), (350, 350, 0, 350), (600, 10000, 5000, 990000), (60, 10000, 5000, 990000),
    (45, 10000, 5000, 990000), (500, 100000, 4500, 900000), (1, 1, 1, 1), (1, 2, 0, 1),
    (50, 100, 5, 900), (67, 1000, 20, 9000), (5, 100, 1, 1), (1, 1, 1, 100),
]
ZTEST = [(600, 20000, 5000, 200000), (60, 2000, 5000, 200000), (520, 10000, 5000, 100000),
         (450, 10000, 5000, 100000), (3000, 10000, 1000, 10000)]


def main():
    if sys.argv[1:] == ["stirlerr"]:
        with localcontext() as ctx:
            ctx.prec = 50
            half_ln2pi = (2 * pi_dec()).ln() / 2
            for n in range(16):
                if n == 0:
                    print("\t0,")
                    continue
                v = ln_int(math.factorial(n)) - (D(n) + D("0.5")) * D(n).ln() + n - half_ln2pi
                print("\t%s, // %d" % (format(+v, ".25e"), n))
        return

    # self-checks: Stirling's series against exact factorials; tails against exact rational sums
    for n in (100001, 123457, 250000):
        with localcontext() as ctx:
            ctx.prec = 80
            assert abs(ln_factorial_stirling(n) - ln_int(math.factorial(n))) < D("1e-55"), n
    for k, n, p in BINOM:
        if n <= 1000:
            e = binom_upper_exact(k, n, p)
            a = binom_upper(k, n, p)
            assert abs(frac_to_ln(e) - a) < D("1e-40"), (k, n, p)
    for c in FISHER:
        if c[1] + c[3] <= 1000:
            assert abs(frac_to_ln(fisher_exact(*c)) - fisher_greater(*c)) < D("1e-40"), c

    print("// binomial: {k, n, p, want, lnWant}")
    for k, n, p in BINOM:
        v, l = out(binom_upper(k, n, p))
        print("{%d, %d, %r, %s, %s}," % (k, n, p, v, l))
    print("// fisher: {a, n1, b, n2, want, lnWant}")
    for c in FISHER:
        v, l = out(fisher_greater(*c))
        print("{%d, %d, %d, %d, %s, %s}," % (c + (v, l)))
    print("// z-test: {a, n1, b, n2, want, lnWant}  (z)")
    for c in ZTEST:
        z = ztest(*c)
        v, l = out(normal_upper(z))
        print("{%d, %d, %d, %d, %s, %s}, // z=%s" % (c + (v, l, format(z, ".6f"))))


if __name__ == "__main__":
    main()

/* test_cellfuzz.c — a differential fuzzer of the cell compiler: random valid
 * cells, compiled (compiler/cellgen.c + jit.c) against the reference
 * interpreter, forward and backward, and autodiff against finite differences.
 *
 * The generator. Each case draws three named dims D0, D1, D2 with values in
 * {1, 2, 3, 5, 7, 9, 13, 17}, one or two inputs and one to three states (each
 * a vector of a random linear form of the dims: D1, 2*D0, D0 + D2 + 1, ...),
 * then 3 to 14 statements (RNNC_FUZZ_STMTS) of at most 48 elements
 * (RNNC_FUZZ_MAXNUMEL), one op each (operands are named values, constants
 * or short inline expressions, so the parser's anonymous nodes are fuzzed too):
 * + - * / (with scalar constants broadcast on either side; a vector divisor is
 * made positive: sigmoid(v) + 0.5), @ and matvec_t with fresh or shared
 * parameter matrices and with per-row matrices outer(a, b) (outer appears only
 * under a reduction), neg, sigmoid, tanh, relu, step, exp (of a value bounded
 * by 3, else of tanh(v)), log (of sigmoid(v), exp(t) + 1 or v * v + 0.5),
 * split (both forms), slice (start and size random linear forms that fit for
 * every binding), concat (with zeros parts), vector parameters and constant
 * vectors (zeros([d]) + c, ...). Every state gets an update of its shape (a
 * value of that shape, a projection, now and then itself or zeros), and the
 * cell one out. The text must parse and verify: a generated cell that does
 * not is a generator bug, and fails with the text.
 *
 * The checks, per case (the cell's IR text, the seed and the case number are
 * printed on any failure; RNNC_FUZZ_SEED=S RNNC_FUZZ_CASE=k reruns case k):
 *  1. The forward cell and its backward cell (autodiff_cell) are JIT-compiled at
 *     the drawn dims and run on 1 to 3 rows; every computed node is compared
 *     with cell_eval(PREC_F32) on each row. Forward leaves are uniform in
 *     [-1, 1); the backward cell gets the forward cell's values (saved inputs,
 *     params) and random output and state adjoints. Both sides round every op
 *     to float32 in the same order, so they differ only where SLEEF's tanh,
 *     exp and log (≤ 1 ulp) differ from libm's, where sigmoid is not
 *     correctly rounded, and where a matvec sums in float32 (the interpreter
 *     sums in double and rounds once). The bound is a first-order forward
 *     error analysis per element, propagated through the graph from the
 *     reference values (errbound()): each transcendental op adds 4 ulp of its
 *     value, a sum of n terms n ulp of Σ|terms|, and each op passes on its
 *     operands' errors times its derivative's magnitude. The test requires
 *     |jit - interp| <= 4 * bound + 1e-30 for every element (a relu or step
 *     whose operand is within its bound of 0 may switch: that is in the bound).
 *     Unlike a relative error per node, this cannot fail by cancellation, and
 *     stays tight (bitwise equality where the bound is 0).
 *  2. Both cells print to text that parses, verifies and prints the same.
 *  3. The backward cell, evaluated in float64 on the forward values, must give
 *     the float64 finite differences of L = Σ <w, out> + Σ <u_s, h'_s>, as in
 *     tests/test_autodiff.c: (8 (L(+e) - L(-e)) - (L(+2e) - L(-2e))) / (12 e),
 *     e = 1e-3, at NCOORD random coordinates of every input, state and param;
 *     error |a - n| / max(|a|, |n|, 1e-3) <= 1e-6. Where e = 1e-3 misses, e =
 *     2.5e-4 (256 times less truncation error: deep random cells have large
 *     fifth derivatives) and e = 4e-3 (4 times less rounding error) are tried
 *     too and the smallest error counts; a wrong rule misses at any e. A
 *     coordinate whose
 *     perturbations flip the sign of a relu or step operand is skipped (the
 *     loss is not smooth there).
 *
 * CI runs RNNC_FUZZ_CASES (default 150, 60 under sanitizers) cases from seed
 * RNNC_FUZZ_SEED (default 20261127).
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <llvm-c/Core.h>

#include "testutil.h"

#if defined(__SANITIZE_ADDRESS__)
#define FUZZ_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define FUZZ_SANITIZED 1
#endif
#endif
#ifndef FUZZ_SANITIZED
#define FUZZ_SANITIZED 0
#endif

enum { NROWS = 3, NCOORD = 4, NSYM = 3, MAXVAL = 256, MAXPARAM = 64 };
/* RNNC_FUZZ_STMTS, RNNC_FUZZ_MAXNUMEL: bigger cells for a campaign */
static long maxstmt = 14, maxnumel = 48;
static const long dimchoice[] = {1, 2, 3, 5, 7, 9, 13, 17};

/* ---- a deterministic generator (splitmix64) ---- */

static uint64_t mix(uint64_t *s)
{
  uint64_t z = (*s += 0x9e3779b97f4a7c15u);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
  return z ^ (z >> 31);
}
static uint64_t rs;
static int rint_(int n) { return (int)(mix(&rs) % (uint64_t)n); } /* [0, n) */
static int chance(double p) { return (double)(mix(&rs) >> 11) / 9007199254740992.0 < p; }
static double uni(void) { return (double)(mix(&rs) >> 11) / 9007199254740992.0 * 2 - 1; } /* [-1, 1) */

/* ---- text buffer ---- */

typedef struct Buf {
  char *s;
  size_t n, cap;
} Buf;

static void bprintf(Buf *b, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  int k = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (b->n + (size_t)k + 1 > b->cap) {
    b->cap = (b->n + (size_t)k + 1) * 2;
    b->s = realloc(b->s, b->cap);
    cr_assert(b->s);
  }
  va_start(ap, fmt);
  vsnprintf(b->s + b->n, (size_t)k + 1, fmt, ap);
  va_end(ap);
  b->n += (size_t)k;
}

/* ---- the cell generator ---- */

/* A vector dim: Σ coef[i]·D_i + coef[NSYM] (all >= 0, not all 0). */
typedef struct Dm {
  int c[NSYM + 1];
} Dm;

typedef struct Val {
  char name[16];
  Dm d;
  double bnd; /* |value| <= bnd for leaves in [-1, 1] (conservative) */
  int uses;
  int leaf;
} Val;

typedef struct Par {
  char name[16];
  int mat;    /* [rows, cols] or a vector [rows] */
  Dm rows, cols;
} Par;

typedef struct Gen {
  long dv[NSYM];           /* the dims' values */
  Val v[MAXVAL];
  int nv;
  Par p[MAXPARAM];
  int np;
  Buf body;
  int ntmp;
  int opcount[32];         /* statements made per kind (coverage) */
} Gen;

enum { K_ADD, K_SUB, K_MUL, K_DIV, K_CONSTL, K_MATVEC, K_MATVECT, K_OUTERMV, K_OUTERMVT, K_NEG, K_SIGMOID,
       K_TANH, K_RELU, K_STEP, K_EXP, K_LOG, K_SPLIT1, K_SPLITN, K_SLICE, K_CONCAT, K_ZEROS, K_VPARAM, K_CONSTVEC, NK };
static const char *const kname[NK] = {"+", "-", "*", "/", "const op v", "@", "matvec_t", "outer @", "matvec_t(outer)",
                                      "neg", "sigmoid", "tanh", "relu", "step", "exp", "log", "split[k]",
                                      "a, b = split", "slice", "concat", "zeros", "vector param",
                                      "constant vector"};
static long kseen[NK];

static int dm_eq(Dm a, Dm b) { return memcmp(&a, &b, sizeof a) == 0; }
static long dm_val(const Gen *g, Dm a)
{
  long n = a.c[NSYM];
  for (int i = 0; i < NSYM; i++)
    n += a.c[i] * g->dv[i];
  return n;
}
static int dm_zero(Dm a)
{
  for (int i = 0; i <= NSYM; i++)
    if (a.c[i])
      return 0;
  return 1;
}

static char *dm_str(Dm a, char *out) /* "2*D0 + D2 + 1" */
{
  out[0] = 0;
  for (int i = 0; i <= NSYM; i++) {
    if (!a.c[i])
      continue;
    char t[32];
    if (i == NSYM)
      snprintf(t, sizeof t, "%d", a.c[i]);
    else if (a.c[i] == 1)
      snprintf(t, sizeof t, "D%d", i);
    else
      snprintf(t, sizeof t, "%d*D%d", a.c[i], i);
    if (out[0])
      strcat(out, " + ");
    strcat(out, t);
  }
  if (!out[0])
    strcpy(out, "0");
  return out;
}

/* A random dim: a dim, twice one, a sum, or a small constant. */
static Dm rand_dm(void)
{
  Dm d = {{0}};
  switch (rint_(6)) {
  case 0: d.c[NSYM] = 1 + rint_(3); break;
  case 1: d.c[rint_(NSYM)] = 2; break;
  case 2: d.c[rint_(NSYM)] = 1; d.c[rint_(NSYM)] += 1; break;
  case 3: d.c[rint_(NSYM)] = 1; d.c[NSYM] = 1; break;
  default: d.c[rint_(NSYM)] = 1; break;
  }
  return d;
}

static int newval(Gen *g, Dm d, double bnd)
{
  cr_assert(g->nv < MAXVAL);
  Val *v = &g->v[g->nv];
  memset(v, 0, sizeof *v);
  snprintf(v->name, sizeof v->name, "v%d", g->nv);
  v->d = d;
  v->bnd = bnd;
  return g->nv++;
}

/* A value to use: an unused one first, sometimes. */
static int pick(Gen *g)
{
  if (chance(0.6)) {
    int cand[MAXVAL], n = 0;
    for (int i = 0; i < g->nv; i++)
      if (!g->v[i].uses)
        cand[n++] = i;
    if (n)
      return cand[rint_(n)];
  }
  return rint_(g->nv);
}

static const char *use(Gen *g, int i)
{
  g->v[i].uses++;
  return g->v[i].name;
}

/* A parameter [rows, cols] (cols zero: a vector [rows]), shared with an
 * earlier one of that shape sometimes. */
static const char *param(Gen *g, Dm rows, Dm cols, int mat)
{
  if (chance(0.3))
    for (int i = 0; i < g->np; i++)
      if (g->p[i].mat == mat && dm_eq(g->p[i].rows, rows) && (!mat || dm_eq(g->p[i].cols, cols)))
        return g->p[i].name;
  cr_assert(g->np < MAXPARAM);
  Par *p = &g->p[g->np];
  snprintf(p->name, sizeof p->name, "P%d", g->np);
  p->mat = mat;
  p->rows = rows;
  p->cols = cols;
  g->np++;
  return p->name;
}

/* A value of dim d: an existing one, or a new projection W @ v. */
static int ofdim(Gen *g, Dm d, int avoid)
{
  int cand[MAXVAL], n = 0;
  for (int i = 0; i < g->nv; i++)
    if (i != avoid && dm_eq(g->v[i].d, d))
      cand[n++] = i;
  if (n && chance(0.7))
    return cand[rint_(n)];
  int s = pick(g);
  char a[64], b[64];
  const char *w = param(g, d, g->v[s].d, 1);
  int y = newval(g, d, dm_val(g, g->v[s].d) * g->v[s].bnd);
  bprintf(&g->body, "  %s = %s @ %s  # [%s] <- [%s]\n", g->v[y].name, w, use(g, s), dm_str(d, a),
          dm_str(g->v[s].d, b));
  g->opcount[K_MATVEC]++;
  return y;
}

/* An operand expression bounded by 3: the value, or tanh of it. */
static const char *bounded(Gen *g, int i, double *bnd, char *buf)
{
  if (g->v[i].bnd <= 3) {
    *bnd = g->v[i].bnd;
    return use(g, i);
  }
  *bnd = 1;
  snprintf(buf, 64, "tanh(%s)", use(g, i));
  return buf;
}

static const char *cst(void)
{
  static const char *const c[] = {"0.5", "2", "1.5", "-1", "-0.25", "3"};
  return c[rint_(6)];
}
static double cstabs(const char *s) { return fabs(atof(s)); }

static int fits(const Gen *g, Dm d) { return !dm_zero(d) && dm_val(g, d) <= maxnumel; }

/* One statement; returns 0 when the drawn kind does not apply here. */
static int stmt(Gen *g, int k)
{
  char t1[64], t2[64], ds[64];
  int a = pick(g);
  Val *va = &g->v[a];
  double ba = va->bnd, bb;
  switch (k) {
  case K_ADD: case K_SUB: case K_MUL: {
    static const char ops[] = "+-*";
    int b;
    if (chance(0.25)) { /* v op const */
      const char *c = cst();
      int y = newval(g, va->d, k == K_MUL ? ba * cstabs(c) : ba + cstabs(c));
      bprintf(&g->body, "  %s = %s %c %s\n", g->v[y].name, use(g, a), ops[k], c);
      return 1;
    }
    b = ofdim(g, g->v[a].d, a);
    va = &g->v[a];
    bb = g->v[b].bnd;
    if (k == K_MUL && ba * bb > 50) {
      const char *ea = bounded(g, a, &ba, t1);
      const char *eb = bounded(g, b, &bb, t2);
      int y = newval(g, va->d, ba * bb);
      bprintf(&g->body, "  %s = %s * %s\n", g->v[y].name, ea, eb);
      return 1;
    }
    int y = newval(g, va->d, k == K_MUL ? ba * bb : ba + bb);
    bprintf(&g->body, "  %s = %s %c %s\n", g->v[y].name, use(g, a), ops[k], use(g, b));
    return 1;
  }
  case K_DIV: {
    if (chance(0.3)) { /* by a constant */
      const char *c = cst();
      int y = newval(g, va->d, ba / cstabs(c));
      bprintf(&g->body, "  %s = %s / %s\n", g->v[y].name, use(g, a), c);
      return 1;
    }
    int b = ofdim(g, g->v[a].d, -1);
    va = &g->v[a];
    int y = newval(g, va->d, 2 * ba);
    bprintf(&g->body, "  %s = %s / (sigmoid(%s) + 0.5)\n", g->v[y].name, use(g, a), use(g, b));
    return 1;
  }
  case K_CONSTL: { /* const op v */
    static const char ops[] = "+-*/";
    int o = rint_(4);
    const char *c = cst();
    if (o == 3) {
      int y = newval(g, va->d, 2 * cstabs(c));
      bprintf(&g->body, "  %s = %s / (sigmoid(%s) + 0.5)\n", g->v[y].name, c, use(g, a));
    } else {
      int y = newval(g, va->d, o == 2 ? ba * cstabs(c) : ba + cstabs(c));
      bprintf(&g->body, "  %s = %s %c %s\n", g->v[y].name, c, ops[o], use(g, a));
    }
    return 1;
  }
  case K_MATVEC: case K_MATVECT: {
    Dm o = chance(0.4) && g->nv ? g->v[rint_(g->nv)].d : rand_dm();
    if (!fits(g, o))
      return 0;
    const char *ea = bounded(g, a, &ba, t1);
    const char *w = k == K_MATVEC ? param(g, o, va->d, 1) : param(g, va->d, o, 1);
    int y = newval(g, o, dm_val(g, va->d) * ba);
    if (k == K_MATVEC)
      bprintf(&g->body, "  %s = %s @ %s\n", g->v[y].name, w, ea);
    else
      bprintf(&g->body, "  %s = matvec_t(%s, %s)\n", g->v[y].name, w, ea);
    return 1;
  }
  case K_OUTERMV: case K_OUTERMVT: {
    /* outer(a, b) @ c with c like b -> like a; matvec_t(outer(a, b), u) with u like a -> like b */
    int b = pick(g);
    if (dm_val(g, va->d) * dm_val(g, g->v[b].d) > 400)
      return 0;
    double bb2;
    const char *ea = bounded(g, a, &ba, t1);
    const char *eb = bounded(g, b, &bb2, t2);
    int c = ofdim(g, k == K_OUTERMV ? g->v[b].d : g->v[a].d, -1);
    double bc;
    char t3[64];
    const char *ec = bounded(g, c, &bc, t3);
    Dm od = k == K_OUTERMV ? g->v[a].d : g->v[b].d;
    long n = dm_val(g, k == K_OUTERMV ? g->v[b].d : g->v[a].d);
    int y = newval(g, od, ba * bb2 * bc * (double)n);
    if (k == K_OUTERMV)
      bprintf(&g->body, "  %s = outer(%s, %s) @ %s\n", g->v[y].name, ea, eb, ec);
    else
      bprintf(&g->body, "  %s = matvec_t(outer(%s, %s), %s)\n", g->v[y].name, ea, eb, ec);
    return 1;
  }
  case K_NEG: {
    int y = newval(g, va->d, ba);
    if (chance(0.5))
      bprintf(&g->body, "  %s = -%s\n", g->v[y].name, use(g, a));
    else
      bprintf(&g->body, "  %s = neg(%s)\n", g->v[y].name, use(g, a));
    return 1;
  }
  case K_SIGMOID: case K_TANH: case K_STEP: {
    int y = newval(g, va->d, 1);
    bprintf(&g->body, "  %s = %s(%s)\n", g->v[y].name, k == K_SIGMOID ? "sigmoid" : k == K_TANH ? "tanh" : "step",
            use(g, a));
    return 1;
  }
  case K_RELU: {
    int y = newval(g, va->d, ba);
    bprintf(&g->body, "  %s = relu(%s)\n", g->v[y].name, use(g, a));
    return 1;
  }
  case K_EXP: {
    const char *ea = bounded(g, a, &ba, t1);
    int y = newval(g, va->d, exp(ba));
    bprintf(&g->body, "  %s = exp(%s)\n", g->v[y].name, ea);
    return 1;
  }
  case K_LOG: {
    int form = rint_(3);
    if (form == 0) {
      const char *ea = bounded(g, a, &ba, t1);
      int y = newval(g, va->d, ba + 1);
      bprintf(&g->body, "  %s = log(sigmoid(%s))\n", g->v[y].name, ea);
    } else if (form == 1) {
      const char *ea = bounded(g, a, &ba, t1);
      int y = newval(g, va->d, ba + 1);
      bprintf(&g->body, "  %s = log(exp(%s) + 1)\n", g->v[y].name, ea);
    } else {
      const char *ea = use(g, a);
      int y = newval(g, va->d, fmax(1, log(ba * ba + 0.5)));
      bprintf(&g->body, "  %s = log(%s * %s + 0.5)\n", g->v[y].name, ea, ea);
    }
    return 1;
  }
  case K_SPLIT1: case K_SPLITN: {
    int n = 2 + rint_(2), cand[MAXVAL], nc = 0;
    for (int i = 0; i < g->nv; i++) { /* a value whose dim n divides */
      int ok = 1;
      for (int q = 0; q <= NSYM; q++)
        ok &= g->v[i].d.c[q] % n == 0;
      if (ok)
        cand[nc++] = i;
    }
    if (!nc)
      return 0;
    a = cand[rint_(nc)];
    va = &g->v[a];
    ba = va->bnd;
    Dm part = va->d;
    for (int i = 0; i <= NSYM; i++)
      part.c[i] /= n;
    if (k == K_SPLIT1) {
      int y = newval(g, part, ba);
      bprintf(&g->body, "  %s = split(%s, %d)[%d]\n", g->v[y].name, use(g, a), n, rint_(n));
      return 1;
    }
    const char *src = use(g, a);
    bprintf(&g->body, " ");
    for (int j = 0; j < n; j++) {
      int y = newval(g, part, ba);
      bprintf(&g->body, "%s %s", j ? "," : "", g->v[y].name);
    }
    bprintf(&g->body, " = split(%s, %d)\n", src, n);
    return 1;
  }
  case K_SLICE: {
    Dm st = {{0}}, sz = {{0}};
    for (int i = 0; i <= NSYM; i++) {
      sz.c[i] = rint_(va->d.c[i] + 1);
      st.c[i] = rint_(va->d.c[i] - sz.c[i] + 1);
    }
    if (dm_zero(sz))
      return 0;
    int y = newval(g, sz, ba);
    bprintf(&g->body, "  %s = slice(%s, %s, %s)\n", g->v[y].name, use(g, a), dm_str(st, t1), dm_str(sz, t2));
    return 1;
  }
  case K_CONCAT: case K_ZEROS: {
    int n = k == K_ZEROS ? 2 : 2 + rint_(2);
    int ops[3] = {a, -1, -1};
    Dm d = va->d;
    double bnd = ba;
    for (int j = 1; j < n; j++) {
      ops[j] = pick(g);
      for (int i = 0; i <= NSYM; i++)
        d.c[i] += g->v[ops[j]].d.c[i];
      bnd = fmax(bnd, g->v[ops[j]].bnd);
    }
    Dm z = g->v[rint_(g->nv)].d; /* a zeros dim must be one of the signature's */
    if (chance(0.3))
      z = (Dm){{0, 0, 0, 1 + rint_(3)}};
    if (k == K_ZEROS)
      for (int i = 0; i <= NSYM; i++)
        d.c[i] = va->d.c[i] + z.c[i];
    if (!fits(g, d))
      return 0;
    int y = newval(g, d, bnd);
    bprintf(&g->body, "  %s = concat(", g->v[y].name);
    if (k == K_ZEROS) {
      if (chance(0.5))
        bprintf(&g->body, "zeros([%s]), %s)\n", dm_str(z, ds), use(g, a));
      else
        bprintf(&g->body, "%s, zeros([%s]))\n", use(g, a), dm_str(z, ds));
      return 1;
    }
    for (int j = 0; j < n; j++)
      bprintf(&g->body, "%s%s", j ? ", " : "", use(g, ops[j]));
    bprintf(&g->body, ")\n");
    return 1;
  }
  case K_CONSTVEC: { /* v op (a constant expression of v's dim): no adjoint flows into it */
    int form = rint_(3);
    const char *c = cst();
    int y = newval(g, va->d, ba * 3 + 3);
    if (form == 0)
      bprintf(&g->body, "  %s = %s * (zeros([%s]) + %s)\n", g->v[y].name, use(g, a), dm_str(va->d, ds), c);
    else if (form == 1)
      bprintf(&g->body, "  %s = %s + exp(zeros([%s]) - %s)\n", g->v[y].name, use(g, a), dm_str(va->d, ds),
              cstabs(c) < 1 ? "0.5" : "1");
    else
      bprintf(&g->body, "  %s = tanh(zeros([%s]) + %s) - %s\n", g->v[y].name, dm_str(va->d, ds), c, use(g, a));
    return 1;
  }
  case K_VPARAM: { /* v * p + q with vector params */
    const char *p = param(g, va->d, va->d, 0);
    int y = newval(g, va->d, ba + 1);
    bprintf(&g->body, "  %s = %s %c %s\n", g->v[y].name, use(g, a), chance(0.5) ? '+' : '*', p);
    return 1;
  }
  }
  die("stmt: kind %d", k);
}

static const int kweight[NK] = {6, 4, 5, 3, 2, 6, 3, 2, 2, 2, 3, 3, 2, 1, 2, 2, 4, 4, 3, 3, 1, 2, 1};

/* The text of a random cell `fz`. */
static char *gencell(Gen *g, int *nstate_out)
{
  memset(g, 0, sizeof *g);
  for (int i = 0; i < NSYM; i++)
    g->dv[i] = dimchoice[rint_(8)];
  int nin = 1 + rint_(2), nst = 1 + rint_(3);
  Buf head = {0};
  char ds[64];
  bprintf(&head, "cell fz(");
  for (int i = 0; i < nin; i++) {
    Dm d;
    do
      d = rand_dm();
    while (!fits(g, d));
    int v = newval(g, d, 1);
    snprintf(g->v[v].name, sizeof g->v[v].name, "x%d", i);
    g->v[v].leaf = 1;
    bprintf(&head, "%sx%d: [%s]", i ? ", " : "", i, dm_str(d, ds));
  }
  bprintf(&head, ") state(");
  int st[3];
  for (int i = 0; i < nst; i++) {
    Dm d;
    do
      d = rand_dm();
    while (!fits(g, d));
    st[i] = newval(g, d, 1);
    snprintf(g->v[st[i]].name, sizeof g->v[st[i]].name, "s%d", i);
    g->v[st[i]].leaf = 1;
    bprintf(&head, "%ss%d: [%s]", i ? ", " : "", i, dm_str(d, ds));
  }
  bprintf(&head, ") {\n");
  int nstmt = 3 + rint_((int)maxstmt - 2), wsum = 0;
  for (int k = 0; k < NK; k++)
    wsum += kweight[k];
  for (int s = 0; s < nstmt && g->nv < MAXVAL - 12 && g->np < MAXPARAM - 6;) {
    int r = rint_(wsum), k = 0;
    while (r >= kweight[k])
      r -= kweight[k++];
    if (stmt(g, k)) {
      g->opcount[k]++;
      s++;
    }
  }
  /* updates: a computed value of the state's dim, or a projection */
  for (int i = 0; i < nst; i++) {
    Dm d = g->v[st[i]].d;
    int cand[MAXVAL], n = 0;
    char t2[64];
    for (int j = 0; j < g->nv; j++)
      if (!g->v[j].leaf && dm_eq(g->v[j].d, d))
        cand[n++] = j;
    if (n && chance(0.6)) {
      bprintf(&g->body, "  s%d' = %s\n", i, use(g, cand[rint_(n)]));
      continue;
    }
    if (chance(0.06)) { /* kept as it is */
      bprintf(&g->body, "  s%d' = s%d\n", i, i);
      continue;
    }
    if (chance(0.04)) { /* reset */
      bprintf(&g->body, "  s%d' = zeros([%s])\n", i, dm_str(d, t2));
      continue;
    }
    int s = pick(g);
    double bs;
    char t[64];
    const char *es = bounded(g, s, &bs, t);
    const char *w = param(g, d, g->v[s].d, 1);
    bprintf(&g->body, "  s%d' = %s(%s @ %s)\n", i, chance(0.5) ? "tanh" : "sigmoid", w, es);
  }
  /* the out: an unused computed value, else the last */
  int out = g->nv - 1;
  for (int j = g->nv - 1; j >= 0; j--)
    if (!g->v[j].leaf && !g->v[j].uses) {
      out = j;
      break;
    }
  if (g->v[out].leaf)
    bprintf(&g->body, "  out tanh(%s)\n", use(g, out));
  else
    bprintf(&g->body, "  out %s\n", use(g, out));
  if (g->np) {
    bprintf(&head, "  param ");
    for (int i = 0; i < g->np; i++) {
      char r[64], c[64];
      if (g->p[i].mat)
        bprintf(&head, "%s%s: [%s, %s]", i ? ", " : "", g->p[i].name, dm_str(g->p[i].rows, r),
                dm_str(g->p[i].cols, c));
      else
        bprintf(&head, "%s%s: [%s]", i ? ", " : "", g->p[i].name, dm_str(g->p[i].rows, r));
    }
    bprintf(&head, "\n");
  }
  bprintf(&head, "%s}\n", g->body.s ? g->body.s : "");
  free(g->body.s);
  g->body = (Buf){0};
  *nstate_out = nst;
  return head.s;
}

/* tests/test_modelfuzz.c includes this file for the generator above (rs,
 * gencell, the coverage counts): CELLFUZZ_GENERATOR_ONLY leaves out the
 * checks and the tests below. */
#ifndef CELLFUZZ_GENERATOR_ONLY

/* ---- checks ---- */

static int isleaf(int op) { return op == OP_INPUT || op == OP_STATE || op == OP_PARAM; }

static double **vals(const Cell *c, const Env *env)
{
  double **v = calloc((size_t)c->nnode + 1, sizeof *v);
  for (int i = 0; i < c->nnode; i++)
    v[i] = calloc((size_t)node_numel(c, i, env) + 1, sizeof **v);
  return v;
}

static void freevals(const Cell *c, double **v)
{
  for (int i = 0; i < c->nnode; i++)
    free(v[i]);
  free(v);
}

/* err[i][e]: a first-order bound on |float32 code - cell_eval(PREC_F32)| for
 * every element, from the reference values y of one row (see the top). */
static void errbound(const Cell *c, const Env *env, double **y, double **err)
{
  const double u = ldexp(1, -24);
  for (int i = 0; i < c->nnode; i++) {
    const Node *nd = &c->node[i];
    long n = node_numel(c, i, env);
    double *E = err[i], *Y = y[i];
    int a = nd->narg > 0 ? nd->arg[0] : -1, b = nd->narg > 1 ? nd->arg[1] : -1;
    switch (opinfo[nd->op].shape_rule) {
    case SH_LEAF:
      for (long e = 0; e < n; e++)
        E[e] = 0;
      break;
    case SH_EW: {
      long na = node_numel(c, a, env), nb = b >= 0 ? node_numel(c, b, env) : 0;
      for (long e = 0; e < n; e++) {
        long ea_ = na == 1 ? 0 : e, eb_ = nb == 1 ? 0 : e;
        double A = y[a][ea_], ea = err[a][ea_];
        double B = b >= 0 ? y[b][eb_] : 0, eb = b >= 0 ? err[b][eb_] : 0;
        double r = 0;
        switch (nd->op) {
        case OP_ADD: case OP_SUB: r = ea + eb + (ea + eb > 0 ? u * fabs(Y[e]) : 0); break;
        case OP_MUL: r = ea * fabs(B) + eb * fabs(A) + ea * eb + (ea + eb > 0 ? u * fabs(Y[e]) : 0); break;
        case OP_DIV:
          r = fabs(B) > eb ? (ea + fabs(Y[e]) * eb) / (fabs(B) - eb) + (ea + eb > 0 ? u * fabs(Y[e]) : 0) : INFINITY;
          break;
        case OP_NEG: r = ea; break;
        case OP_SIGMOID: r = fmin(ea * 0.2525, 1) + 4 * u * fabs(Y[e]); break;
        case OP_TANH: r = fmin(ea, 2) * (1 - Y[e] * Y[e] + 2 * ea) + 4 * u * fabs(Y[e]); break;
        case OP_RELU: r = fabs(A) > ea ? (A > 0 ? ea : 0) : fabs(A) + ea; break;
        case OP_STEP: r = fabs(A) > ea ? 0 : 1; break;
        case OP_EXP: r = fabs(Y[e]) * expm1(ea) + 4 * u * fabs(Y[e]); break;
        case OP_LOG: r = fabs(A) > ea ? -log1p(-ea / fabs(A)) + 4 * u * fabs(Y[e]) : INFINITY; break;
        default: die("errbound: op %s", opinfo[nd->op].spelling);
        }
        E[e] = isnan(r) ? INFINITY : r; /* inf * 0 */
      }
      break;
    }
    case SH_MATVEC: case SH_MATVECT: {
      int t = opinfo[nd->op].shape_rule == SH_MATVECT;
      long nin = node_numel(c, b, env), ncol = t ? n : nin;
      for (long o = 0; o < n; o++) {
        double s = 0, sabs = 0;
        for (long k = 0; k < nin; k++) {
          long ij = t ? k * ncol + o : o * ncol + k;
          double W = y[a][ij], V = y[b][k];
          s += fabs(W) * err[b][k] + err[a][ij] * fabs(V) + err[a][ij] * err[b][k];
          sabs += fabs(W * V) + fabs(W) * err[b][k] + err[a][ij] * fabs(V);
        }
        E[o] = isnan(s + sabs) ? INFINITY : s + (double)(nin + 1) * u * sabs;
      }
      break;
    }
    case SH_OUTER: {
      long nb = node_numel(c, b, env);
      for (long e = 0; e < n; e++) {
        double A = y[a][e / nb], B = y[b][e % nb], ea = err[a][e / nb], eb = err[b][e % nb];
        double r = ea * fabs(B) + eb * fabs(A) + ea * eb + (ea + eb > 0 ? u * fabs(Y[e]) : 0);
        E[e] = isnan(r) ? INFINITY : r;
      }
      break;
    }
    case SH_SPLIT:
      for (long e = 0; e < n; e++)
        E[e] = err[a][nd->k * n + e];
      break;
    case SH_SLICE: {
      long start = 0;
      const char *bad;
      if (!dim_eval(nd->start, env, &start, &bad))
        die("errbound: unbound %s", bad);
      for (long e = 0; e < n; e++)
        E[e] = err[a][start + e];
      break;
    }
    case SH_CONCAT: {
      long off = 0;
      for (int j = 0; j < nd->narg; j++) {
        long m = node_numel(c, nd->arg[j], env);
        for (long e = 0; e < m; e++)
          E[off + e] = err[nd->arg[j]][e];
        off += m;
      }
      break;
    }
    default: die("errbound: op %s", opinfo[nd->op].spelling);
    }
  }
}

typedef struct Ctx {
  uint64_t seed;
  int kase;
  const char *text;
  Module *m;
  int fails;
  long nodes_cmp, elems_cmp, exact, coords, skipped;
  double worst_ratio, worst_fd;
  int quiet;           /* the self-test: count failures, log nothing */
  double jitscale;     /* the self-test: compiled values scaled by this (0: 1) */
  double adscale;      /* the self-test: backward-cell gradients scaled by this (0: 1) */
} Ctx;

static void report(Ctx *x, const char *fmt, ...)
{
  char msg[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  x->fails++;
  if (x->quiet)
    return;
  cr_log_error("cellfuzz: seed %llu case %d: %s\nrerun: RNNC_FUZZ_SEED=%llu RNNC_FUZZ_CASE=%d\n%s",
               (unsigned long long)x->seed, x->kase, msg, (unsigned long long)x->seed, x->kase, x->text);
}

static int nsym;

/* JIT c at env, run it on rows whose leaves are lv[r][leaf node] (the param
 * values from row 0), compare every computed node with cell_eval(PREC_F32).
 * Returns 1 when it passes. */
static int jitcheck(Ctx *x, Jit *j, const Cell *c, const Env *env, double **lv[NROWS], int nrows)
{
  char err[1024], sym[64];
  snprintf(sym, sizeof sym, "fz%d", nsym++);
  LLVMModuleRef mod = NULL;
  int rc = cellgen(jit_context(j), c, env, sym, &mod, err, sizeof err);
  if (rc != RNNC_OK) {
    report(x, "cellgen(%s) failed: %s", c->name, err);
    return 0;
  }
  if ((rc = jit_add(j, mod, err, sizeof err)) != RNNC_OK) {
    report(x, "jit_add(%s) failed: %s", c->name, err);
    return 0;
  }
  uintptr_t addr = 0;
  if ((rc = jit_lookup(j, sym, &addr, err, sizeof err)) != RNNC_OK || !addr) {
    report(x, "jit_lookup(%s) failed: %s", c->name, err);
    return 0;
  }
  CellStepFn step = (CellStepFn)addr;
  int nin = cellgen_nin(c), nout = cellgen_nout(c);
  long *numel = calloc((size_t)c->nnode + 1, sizeof *numel);
  int *slot = calloc((size_t)c->nnode + 1, sizeof *slot);
  for (int i = 0, k = 0; i < c->nnode; i++) {
    numel[i] = node_numel(c, i, env);
    if (!isleaf(c->node[i].op))
      slot[i] = k++;
  }
  const int *leaves[3] = {c->input, c->state, c->param};
  int nleaves[3] = {c->ninput, c->nstate, c->nparam};
  float **in = calloc((size_t)nin + 1, sizeof *in), **out = calloc((size_t)nout + 1, sizeof *out);
  for (int l = 0, k = 0; l < 3; l++)
    for (int q = 0; q < nleaves[l]; q++, k++) {
      int i = leaves[l][q];
      slot[i] = k;
      long rows = l == 2 ? 1 : nrows;
      in[k] = calloc((size_t)(numel[i] * rows) + 1, sizeof **in);
      for (long r = 0; r < rows; r++)
        for (long e = 0; e < numel[i]; e++)
          in[k][r * numel[i] + e] = (float)lv[r][i][e];
    }
  for (int i = 0; i < c->nnode; i++)
    if (!isleaf(c->node[i].op))
      out[slot[i]] = calloc((size_t)(numel[i] * nrows) + 1, sizeof **out);
  step((const float *const *)in, out, nrows);

  int ok = 1;
  double **ref = vals(c, env), **eb = vals(c, env);
  for (int r = 0; r < nrows && ok; r++) {
    for (int l = 0; l < 3; l++)
      for (int q = 0; q < nleaves[l]; q++) {
        int i = leaves[l][q];
        for (long e = 0; e < numel[i]; e++)
          ref[i][e] = (float)lv[l == 2 ? 0 : r][i][e];
      }
    cell_eval(c, env, ref, PREC_F32);
    errbound(c, env, ref, eb);
    for (int i = 0; i < c->nnode && ok; i++) {
      if (isleaf(c->node[i].op))
        continue;
      x->nodes_cmp++;
      for (long e = 0; e < numel[i]; e++) {
        double jv = out[slot[i]][r * numel[i] + e] * (x->jitscale ? x->jitscale : 1), rv = ref[i][e];
        double d = fabs(jv - rv), lim = 4 * eb[i][e] + 1e-30;
        x->elems_cmp++;
        x->exact += d == 0;
        if (lim < INFINITY && lim > 0)
          x->worst_ratio = fmax(x->worst_ratio, d / lim);
        if (!(d <= lim) && !(isnan(jv) && isnan(rv))) {
          report(x, "%s: node %d '%s' (%s), row %d element %ld: jit %.9g, interp %.9g, |diff| %.3g > bound %.3g",
                 c->name, i, c->node[i].name ? c->node[i].name : "", opinfo[c->node[i].op].spelling, r, e, jv, rv,
                 d, lim);
          ok = 0;
          break;
        }
      }
    }
  }
  freevals(c, ref);
  freevals(c, eb);
  for (int k = 0; k < nin; k++)
    free(in[k]);
  for (int k = 0; k < nout; k++)
    free(out[k]);
  free(in);
  free(out);
  free(slot);
  free(numel);
  return ok;
}

/* L = Σ_j <w_j, out_j> + Σ_s <u_s, next_s>; *kinks gets each relu/step
 * operand's sign pattern compared with ref (1 when one differs). */
static double loss(const Cell *c, const Env *env, double **v, double **w, double **u, double **ref, int *kinks)
{
  cell_eval(c, env, v, PREC_F64);
  double L = 0;
  for (int j = 0; j < c->nout; j++)
    for (long e = 0; e < node_numel(c, c->out[j], env); e++)
      L += w[j][e] * v[c->out[j]][e];
  for (int s = 0; s < c->nstate; s++)
    for (long e = 0; e < node_numel(c, c->next[s], env); e++)
      L += u[s][e] * v[c->next[s]][e];
  if (ref && kinks)
    for (int i = 0; i < c->nnode; i++)
      if (c->node[i].op == OP_RELU || c->node[i].op == OP_STEP) {
        int a = c->node[i].arg[0];
        for (long e = 0; e < node_numel(c, a, env); e++)
          *kinks |= (v[a][e] > 0) != (ref[a][e] > 0) || v[a][e] == 0;
      }
  return L;
}

/* print_cell's text parses and verifies, and prints again byte for byte. */
static void roundtrip(Ctx *x, const Cell *c)
{
  char *t1 = NULL, *t2 = NULL;
  size_t n1 = 0, n2 = 0;
  FILE *f = open_memstream(&t1, &n1);
  cr_assert(f);
  print_cell(f, c);
  fclose(f);
  Module *m = module_new();
  cr_assert(m);
  const Source *src = source_new(m, "<printed>", t1);
  if (parse(m, src) != RNNC_OK || verify(m) != RNNC_OK) {
    report(x, "the printed cell '%s' does not parse and verify:\n%s\n%s", c->name, diags_string(m->arena, &m->diags), t1);
  } else {
    Cell *c2 = cell_find(m, c->name);
    cr_assert(c2, "no cell '%s' in\n%s", c->name, t1);
    f = open_memstream(&t2, &n2);
    cr_assert(f);
    print_cell(f, c2);
    fclose(f);
    if (strcmp(t1, t2) != 0)
      report(x, "the printed cell '%s' prints differently when parsed:\n%s\nthen\n%s", c->name, t1, t2);
  }
  module_free(m);
  free(t1);
  free(t2);
}

/* One case: generate, parse, verify, differentiate, JIT both cells, check. */
static void run_case(Ctx *x, Jit *j)
{
  Gen *g = calloc(1, sizeof *g);
  int nst;
  char *text = gencell(g, &nst);
  x->text = text;
  for (int k = 0; k < NK; k++)
    kseen[k] += g->opcount[k];
  Module *m = module_new();
  cr_assert(m);
  const Source *src = source_new(m, "<cellfuzz>", text);
  if (parse(m, src) != RNNC_OK || verify(m) != RNNC_OK) {
    report(x, "the generated cell does not parse and verify (a generator bug):\n%s",
           diags_string(m->arena, &m->diags));
    goto done;
  }
  Cell *c = cell_find(m, "fz");
  cr_assert(c);
  Env env = {0};
  for (int d = 0; d < NSYM; d++) {
    char nm[8];
    snprintf(nm, sizeof nm, "D%d", d);
    env_set(m->arena, &env, intern(m->names, nm, strlen(nm)), g->dv[d]);
  }
  Grad *gr = autodiff_cell(m, c);
  if (!gr) {
    report(x, "autodiff_cell failed: %s", diags_string(m->arena, &m->diags));
    goto done;
  }
  Cell *b = gr->bwd;
  roundtrip(x, c);
  roundtrip(x, b);

  /* forward leaves per row; the forward values in float32 feed the backward cell */
  double **fv[NROWS], **bvv[NROWS];
  for (int r = 0; r < NROWS; r++) {
    fv[r] = vals(c, &env);
    bvv[r] = vals(b, &env);
    for (int i = 0; i < c->nnode; i++)
      if (isleaf(c->node[i].op))
        for (long e = 0; e < node_numel(c, i, &env); e++)
          fv[r][i][e] = c->node[i].op == OP_PARAM && r > 0 ? fv[0][i][e] : (float)uni();
    cell_eval(c, &env, fv[r], PREC_F32);
    for (int k = 0; k < gr->nsaved; k++)
      memcpy(bvv[r][b->input[k]], fv[r][gr->saved[k]], (size_t)node_numel(c, gr->saved[k], &env) * sizeof(double));
    for (int q = gr->nsaved; q < b->ninput; q++)
      for (long e = 0; e < node_numel(b, b->input[q], &env); e++)
        bvv[r][b->input[q]][e] = (float)uni();
    for (int s = 0; s < b->nstate; s++)
      for (long e = 0; e < node_numel(b, b->state[s], &env); e++)
        bvv[r][b->state[s]][e] = (float)uni();
    for (int p = 0; p < b->nparam; p++)
      memcpy(bvv[r][b->param[p]], fv[0][c->param[p]], (size_t)node_numel(c, c->param[p], &env) * sizeof(double));
  }
  int nrows = 1 + rint_(NROWS);
  if (jitcheck(x, j, c, &env, fv, nrows))
    jitcheck(x, j, b, &env, bvv, nrows);

  /* autodiff against float64 finite differences, at row 0's leaves */
  {
    double **v = vals(c, &env), **v0 = vals(c, &env), **bv = vals(b, &env);
    double **w = calloc((size_t)c->nout + 1, sizeof *w), **uu = calloc((size_t)c->nstate + 1, sizeof *uu);
    for (int i = 0; i < c->nnode; i++)
      if (isleaf(c->node[i].op))
        memcpy(v[i], fv[0][i], (size_t)node_numel(c, i, &env) * sizeof(double));
    for (int jo = 0; jo < c->nout; jo++) {
      w[jo] = calloc((size_t)node_numel(c, c->out[jo], &env) + 1, sizeof **w);
      for (long e = 0; e < node_numel(c, c->out[jo], &env); e++)
        w[jo][e] = uni();
    }
    for (int s = 0; s < c->nstate; s++) {
      uu[s] = calloc((size_t)node_numel(c, c->state[s], &env) + 1, sizeof **uu);
      for (long e = 0; e < node_numel(c, c->state[s], &env); e++)
        uu[s][e] = uni();
    }
    double L0 = loss(c, &env, v, w, uu, NULL, NULL);
    for (int i = 0; i < c->nnode; i++)
      memcpy(v0[i], v[i], (size_t)node_numel(c, i, &env) * sizeof(double));
    for (int k = 0; k < gr->nsaved; k++)
      memcpy(bv[b->input[k]], v[gr->saved[k]], (size_t)node_numel(c, gr->saved[k], &env) * sizeof(double));
    for (int jo = 0; jo < c->nout; jo++)
      memcpy(bv[b->input[gr->nsaved + jo]], w[jo], (size_t)node_numel(c, c->out[jo], &env) * sizeof(double));
    for (int s = 0; s < c->nstate; s++)
      memcpy(bv[b->state[s]], uu[s], (size_t)node_numel(c, c->state[s], &env) * sizeof(double));
    for (int p = 0; p < c->nparam; p++)
      memcpy(bv[b->param[p]], v[c->param[p]], (size_t)node_numel(c, c->param[p], &env) * sizeof(double));
    cell_eval(b, &env, bv, PREC_F64);
    if (!isfinite(L0))
      report(x, "the forward loss is not finite: %g", L0);
    const double eps = 1e-3;
    for (int l = 0; l < 3 && isfinite(L0); l++) {
      int n = l == 0 ? c->ninput : l == 1 ? c->nstate : c->nparam;
      for (int k = 0; k < n; k++) {
        int leaf = l == 0 ? c->input[k] : l == 1 ? c->state[k] : c->param[k];
        int an = l == 0 ? b->out[k] : l == 1 ? b->next[k] : b->grad[k];
        long ne = node_numel(c, leaf, &env);
        for (int q = 0; q < NCOORD && q < ne; q++) {
          long e = ne <= NCOORD ? q : rint_((int)ne);
          double ana = an >= 0 ? bv[an][e] * (x->adscale ? x->adscale : 1) : 0, num = 0, er = INFINITY;
          int kinks = 0;
          /* e = 1e-3, and where that misses, e = 2.5e-4 (truncation error
           * 256 times smaller) and e = 4e-3 (rounding error 4 times
           * smaller): the smallest error counts */
          for (int pass = 0; pass < 3 && !(er <= 1e-6) && !kinks; pass++) {
            double h = pass == 0 ? eps : pass == 1 ? eps / 4 : eps * 4, xe = v[leaf][e], Ld[4];
            const double off[4] = {h, -h, 2 * h, -2 * h};
            for (int t = 0; t < 4; t++) {
              v[leaf][e] = xe + off[t];
              Ld[t] = loss(c, &env, v, w, uu, v0, &kinks);
            }
            v[leaf][e] = xe;
            double nm = (8 * (Ld[0] - Ld[1]) - (Ld[2] - Ld[3])) / (12 * h);
            double erp = fabs(ana - nm) / fmax(fmax(fabs(ana), fabs(nm)), 1e-3);
            if (!(erp >= er))
              er = erp, num = nm;
          }
          if (kinks) {
            x->skipped++;
            continue;
          }
          x->coords++;
          x->worst_fd = fmax(x->worst_fd, er);
          if (!(er <= 1e-6)) {
            report(x, "autodiff: d L / d %s '%s' element %ld: backward cell %.12g, finite difference %.12g (error %.3g)",
                   l == 0 ? "input" : l == 1 ? "state" : "param", c->node[leaf].name, e, ana, num, er);
            goto fddone;
          }
        }
      }
    }
  fddone:
    for (int jo = 0; jo < c->nout; jo++)
      free(w[jo]);
    for (int s = 0; s < c->nstate; s++)
      free(uu[s]);
    free(w);
    free(uu);
    freevals(c, v);
    freevals(c, v0);
    freevals(b, bv);
  }
  for (int r = 0; r < NROWS; r++) {
    freevals(c, fv[r]);
    freevals(b, bvv[r]);
  }
done:
  module_free(m);
  free(text);
  free(g);
  x->text = NULL;
}

static long envlong(const char *name, long def)
{
  const char *s = getenv(name);
  return s && *s ? strtol(s, NULL, 0) : def;
}

Test(cellfuzz, random_cells_compiled_vs_interpreted_and_autodiff_vs_finite_differences, .timeout = 600)
{
  long ncase = envlong("RNNC_FUZZ_CASES", FUZZ_SANITIZED ? 60 : 150);
  long only = envlong("RNNC_FUZZ_CASE", -1);
  uint64_t seed = (uint64_t)envlong("RNNC_FUZZ_SEED", 20261127);
  maxstmt = envlong("RNNC_FUZZ_STMTS", 14);
  maxnumel = envlong("RNNC_FUZZ_MAXNUMEL", 48);
  cr_assert(maxstmt >= 3 && maxnumel >= 17, "RNNC_FUZZ_STMTS >= 3, RNNC_FUZZ_MAXNUMEL >= 17");
  Ctx x = {.seed = seed};
  Jit *j = NULL;
  char err[512];
  long first = only >= 0 ? only : 0, last = only >= 0 ? only + 1 : ncase;
  for (long k = first; k < last; k++) {
    if (!j || (k - first) % 64 == 0) { /* a fresh JIT now and then bounds its memory */
      jit_free(j);
      cr_assert_eq(jit_new(&j, err, sizeof err), RNNC_OK, "%s", err);
    }
    uint64_t s = seed ^ ((uint64_t)k * 0x2545f4914f6cdd1du);
    rs = mix(&s);
    x.kase = (int)k;
    run_case(&x, j);
  }
  jit_free(j);
  char cov[1024] = "";
  for (int k = 0; k < NK; k++)
    snprintf(cov + strlen(cov), sizeof cov - strlen(cov), " %s:%ld", kname[k], kseen[k]);
  cr_log_info("cellfuzz: seed %llu, %ld cases, %d failed; %ld nodes and %ld elements compared (%ld bitwise equal), "
              "worst |diff| / bound %.3g; %ld finite-difference coordinates (%ld skipped at kinks), worst error %.3g",
              (unsigned long long)seed, last - first, x.fails, x.nodes_cmp, x.elems_cmp, x.exact, x.worst_ratio,
              x.coords, x.skipped, x.worst_fd);
  cr_log_info("cellfuzz: statements made:%s", cov);
  cr_assert_eq(x.fails, 0, "%d of %ld cases failed (see the log above)", x.fails, last - first);
  if (only < 0)
    for (int k = 0; k < NK; k++)
      cr_expect(ncase < 25 || kseen[k] > 0, "no case made a '%s' statement", kname[k]);
}

/* The checks are not vacuous: compiled values off by a relative 1e-5, or
 * gradients off by 1e-4, fail on the first cases. */
Test(cellfuzz, the_checks_catch_small_errors)
{
  Jit *j = NULL;
  char err[512];
  cr_assert_eq(jit_new(&j, err, sizeof err), RNNC_OK, "%s", err);
  Ctx ok = {.seed = 1}, jbad = {.seed = 1, .quiet = 1, .jitscale = 1 + 1e-5},
      abad = {.seed = 1, .quiet = 1, .adscale = 1 + 1e-4};
  Ctx *cx[3] = {&ok, &jbad, &abad};
  for (int q = 0; q < 3; q++)
    for (int k = 0; k < 4; k++) {
      uint64_t s = 1 ^ ((uint64_t)k * 0x2545f4914f6cdd1du);
      rs = mix(&s);
      cx[q]->kase = k;
      run_case(cx[q], j);
    }
  jit_free(j);
  cr_assert_eq(ok.fails, 0);
  cr_assert_eq(jbad.fails, 4, "%d of 4 cases caught a relative error of 1e-5 in the compiled values", jbad.fails);
  cr_assert_eq(abad.fails, 4, "%d of 4 cases caught a relative error of 1e-4 in the gradients", abad.fails);
}

#endif /* CELLFUZZ_GENERATOR_ONLY */

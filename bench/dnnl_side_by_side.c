/* dnnl_side_by_side.c - C5's LSTM cell stack in rnnc and in oneDNN's fused
 * LSTM primitive, in one process, round by round (bench/README.md, "oneDNN
 * side by side").
 *
 * Two separate processes, minutes apart, disagree by ±15% on this shared
 * machine: whoever runs in the quieter minute wins. Here every round runs one
 * step of each, the order alternating, and the figure of merit is the median
 * over rounds of the ratio of the two times of the same round.
 *
 * The same job on both sides, with the same numbers:
 *   - rnnc compiles bench/models/c5_deepbench_lstm.rnn (I = H = 1024) at
 *     B = 32, T = 25 through the C API, RNNC_GRAD; loss = sum of the outputs;
 *     rnnc_forward_backward computes every grad.* (W_ih, W_hh, b_ih, b_hh, x);
 *   - oneDNN runs the program of ../shared/baselines/dnnl_lstm_bench.c (also
 *     bench/dnnl_lstm_bench.c) on rnnc's parameters and input: forward_training,
 *     the per-step reorder of the weights into the backward primitive's layout,
 *     zeroing the weight gradients, backward with diff_dst = 1 (d loss / d h);
 *     training passes the zero initial states explicitly (dnnl_setup says why);
 *   - before timing, the loss and all gradients of the two are compared
 *     (relative to each tensor's largest magnitude) and the program stops on a
 *     difference over 1e-4;
 *   - forward only: rnnc_forward on a net without RNNC_GRAD sharing the
 *     parameters, against oneDNN's forward_inference.
 * Neither side clips or updates (the training step of rnnc_bench does).
 *
 * Usage: OMP_NUM_THREADS=N dnnl_side_by_side [ROUNDS [WARMUP]]  (default 20, 2)
 * Output: one JSON line; "ratio" = oneDNN time / rnnc time within a round
 * (above 1: rnnc is faster), its median, 25th and 75th percentiles.
 */
#include <math.h>
#include <omp.h>
#include <oneapi/dnnl/dnnl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rnnc.h"

#ifndef RNNC_BENCH_MODELS
#define RNNC_BENCH_MODELS "bench/models"
#endif

enum { T = 25, B = 32, I = 1024, H = 1024, G = 4 };

#define CHECK(f)                                                                              \
  do {                                                                                        \
    dnnl_status_t s_ = (f);                                                                   \
    if (s_ != dnnl_success) {                                                                 \
      fprintf(stderr, "dnnl_side_by_side: %s:%d: %s failed: status %d\n", __FILE__, __LINE__, \
              #f, s_);                                                                        \
      exit(1);                                                                                \
    }                                                                                         \
  } while (0)

static dnnl_engine_t eng;
static dnnl_stream_t strm;
static rnnc_ctx *ctx;

static void rcheck(int st, const char *what) {
  if (st == RNNC_OK) return;
  fprintf(stderr, "dnnl_side_by_side: %s: %s\n", what, rnnc_errmsg(ctx));
  exit(1);
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static int cmpd(const void *x, const void *y) {
  double a = *(const double *)x, b = *(const double *)y;
  return (a > b) - (a < b);
}

/* The q-quantile (0 <= q <= 1) of n values, by the nearest rank; sorts v. */
static double quantile(double *v, int n, double q) {
  qsort(v, n, sizeof *v, cmpd);
  return v[(int)(q * (n - 1) + 0.5)];
}

static dnnl_memory_desc_t md_tag(int nd, const dnnl_dims_t d, dnnl_format_tag_t tag) {
  dnnl_memory_desc_t md;
  CHECK(dnnl_memory_desc_init_by_tag(&md, nd, d, dnnl_f32, tag));
  return md;
}

static dnnl_memory_t mem(const dnnl_memory_desc_t *md) {
  dnnl_memory_t m;
  CHECK(dnnl_memory_create(&m, md, eng, DNNL_MEMORY_ALLOCATE));
  return m;
}

static float *ptr(dnnl_memory_t m) {
  void *h;
  CHECK(dnnl_memory_get_data_handle(m, &h));
  return h;
}

static const dnnl_memory_desc_t *qmd(dnnl_primitive_desc_t pd, int arg) {
  return dnnl_primitive_desc_query_md(pd, dnnl_query_exec_arg_md, arg);
}

static const char *impl(dnnl_primitive_desc_t pd) {
  const char *s = NULL;
  CHECK(dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &s));
  return s;
}

static void exec(dnnl_primitive_t p, int n, dnnl_exec_arg_t *a) {
  CHECK(dnnl_primitive_execute(p, strm, n, a));
}

/* A reorder from (src, s) into a new memory of layout d; *prim keeps the
 * primitive when it is to be run again. */
static dnnl_memory_t reorder(dnnl_memory_t src, const dnnl_memory_desc_t *s,
                             const dnnl_memory_desc_t *d, dnnl_primitive_t *prim) {
  dnnl_memory_t dst = mem(d);
  dnnl_primitive_desc_t rpd;
  dnnl_primitive_t r;
  CHECK(dnnl_reorder_primitive_desc_create(&rpd, s, eng, d, eng, NULL));
  CHECK(dnnl_primitive_create(&r, rpd));
  exec(r, 2, (dnnl_exec_arg_t[]){{DNNL_ARG_FROM, src}, {DNNL_ARG_TO, dst}});
  CHECK(dnnl_stream_wait(strm));
  dnnl_primitive_desc_destroy(rpd);
  if (prim)
    *prim = r;
  else
    dnnl_primitive_destroy(r);
  return dst;
}

/* oneDNN's side: the baseline's C5 (one layer), on given user-layout data. */
typedef struct Dnnl {
  dnnl_primitive_desc_t fpd, bpd, ipd;
  dnnl_primitive_t fwd, bwd, inf, rwl, rwi;
  dnnl_memory_t x, uwl, uwi, ub;      /* user layouts: tnc, ldigo, ldgo */
  dnnl_memory_t fwl, fwi, fb, dst, ws; /* forward_training */
  dnnl_memory_t bwl, bwi, bb;          /* backward's layouts */
  dnnl_memory_t iwl, iwi, ib, idst;    /* forward_inference */
  dnnl_memory_t dx, ddst, dwl, dwi, db;
  dnnl_memory_desc_t uwlmd, uwimd, ubmd;
  dnnl_memory_t s, sc, ds, dsc;        /* zero initial states h, c; their gradients */
  int bwd_reorder;
} Dnnl;

static void dnnl_setup(Dnnl *d) {
  const dnnl_dims_t ds = {T, B, I}, dd = {T, B, H}, dwl = {1, 1, I, G, H}, dwi = {1, 1, H, G, H},
                    db = {1, 1, G, H};
  dnnl_memory_desc_t src = md_tag(3, ds, dnnl_tnc), dst = md_tag(3, dd, dnnl_tnc);
  dnnl_memory_desc_t wl = md_tag(5, dwl, dnnl_format_tag_any), wi = md_tag(5, dwi, dnnl_format_tag_any);
  dnnl_memory_desc_t b = md_tag(4, db, dnnl_format_tag_any);
  d->uwlmd = md_tag(5, dwl, dnnl_ldigo);
  d->uwimd = md_tag(5, dwi, dnnl_ldigo);
  d->ubmd = md_tag(4, db, dnnl_ldgo);
  d->x = mem(&src);
  d->uwl = mem(&d->uwlmd);
  d->uwi = mem(&d->uwimd);
  d->ub = mem(&d->ubmd);

  /* Zero initial states, given explicitly: oneDNN 2.6.3 without them
   * (src_iter NULL, as the baseline program runs it) returned a weight
   * gradient W_hh of sum_t d_gates_t h_t, not h_{t-1}: 0.37 away from
   * PyTorch's and rnnc's, where the other gradients agreed to 1e-6. */
  const dnnl_dims_t dst_ = {1, 1, B, H};
  dnnl_memory_desc_t smd = md_tag(4, dst_, dnnl_ldnc);
  d->s = mem(&smd);
  d->sc = mem(&smd);
  d->ds = mem(&smd);
  d->dsc = mem(&smd);
  memset(ptr(d->s), 0, sizeof(float) * B * H);
  memset(ptr(d->sc), 0, sizeof(float) * B * H);
  dnnl_rnn_desc_t rd;
  const dnnl_rnn_direction_t dir = dnnl_unidirectional_left2right;
  CHECK(dnnl_lstm_forward_desc_init(&rd, dnnl_forward_inference, dir, &src, NULL, NULL, &wl, &wi, &b, &dst,
                                    NULL, NULL, 0));
  CHECK(dnnl_primitive_desc_create(&d->ipd, &rd, NULL, eng, NULL));
  CHECK(dnnl_primitive_create(&d->inf, d->ipd));
  CHECK(dnnl_lstm_forward_desc_init(&rd, dnnl_forward_training, dir, &src, &smd, &smd, &wl, &wi, &b, &dst,
                                    NULL, NULL, 0));
  CHECK(dnnl_primitive_desc_create(&d->fpd, &rd, NULL, eng, NULL));
  CHECK(dnnl_primitive_create(&d->fwd, d->fpd));
  CHECK(dnnl_lstm_backward_desc_init(&rd, dnnl_backward, dir, &src, &smd, &smd, &wl, &wi, &b, &dst, NULL,
                                     NULL, &src, &smd, &smd, &wl, &wi, &b, &dst, NULL, NULL, 0));
  CHECK(dnnl_primitive_desc_create(&d->bpd, &rd, NULL, eng, d->fpd));
  CHECK(dnnl_primitive_create(&d->bwd, d->bpd));
  d->dst = mem(qmd(d->fpd, DNNL_ARG_DST_LAYER));
  d->ws = mem(qmd(d->fpd, DNNL_ARG_WORKSPACE));
  d->idst = mem(qmd(d->ipd, DNNL_ARG_DST_LAYER));
  d->dx = mem(qmd(d->bpd, DNNL_ARG_DIFF_SRC_LAYER));
  d->ddst = mem(qmd(d->bpd, DNNL_ARG_DIFF_DST_LAYER));
  d->dwl = mem(qmd(d->bpd, DNNL_ARG_DIFF_WEIGHTS_LAYER));
  d->dwi = mem(qmd(d->bpd, DNNL_ARG_DIFF_WEIGHTS_ITER));
  d->db = mem(qmd(d->bpd, DNNL_ARG_DIFF_BIAS));
  const dnnl_memory_desc_t *m = qmd(d->bpd, DNNL_ARG_DIFF_DST_LAYER);
  float *p = ptr(d->ddst);
  for (size_t i = 0; i < dnnl_memory_desc_get_size(m) / sizeof(float); i++) p[i] = 1; /* d sum / d h */
}

/* The weights, once the user layouts hold them, into each primitive's. */
static void dnnl_weights(Dnnl *d) {
  d->iwl = reorder(d->uwl, &d->uwlmd, qmd(d->ipd, DNNL_ARG_WEIGHTS_LAYER), NULL);
  d->iwi = reorder(d->uwi, &d->uwimd, qmd(d->ipd, DNNL_ARG_WEIGHTS_ITER), NULL);
  d->ib = reorder(d->ub, &d->ubmd, qmd(d->ipd, DNNL_ARG_BIAS), NULL);
  d->fwl = reorder(d->uwl, &d->uwlmd, qmd(d->fpd, DNNL_ARG_WEIGHTS_LAYER), NULL);
  d->fwi = reorder(d->uwi, &d->uwimd, qmd(d->fpd, DNNL_ARG_WEIGHTS_ITER), NULL);
  d->fb = reorder(d->ub, &d->ubmd, qmd(d->fpd, DNNL_ARG_BIAS), NULL);
  const dnnl_memory_desc_t *bwl = qmd(d->bpd, DNNL_ARG_WEIGHTS_LAYER), *bwi = qmd(d->bpd, DNNL_ARG_WEIGHTS_ITER);
  d->bwd_reorder = !dnnl_memory_desc_equal(bwl, qmd(d->fpd, DNNL_ARG_WEIGHTS_LAYER)) ||
                   !dnnl_memory_desc_equal(bwi, qmd(d->fpd, DNNL_ARG_WEIGHTS_ITER));
  d->bwl = reorder(d->uwl, &d->uwlmd, bwl, &d->rwl);
  d->bwi = reorder(d->uwi, &d->uwimd, bwi, &d->rwi);
  d->bb = reorder(d->ub, &d->ubmd, qmd(d->bpd, DNNL_ARG_BIAS), NULL);
}

static void zero(dnnl_memory_t m, const dnnl_memory_desc_t *md) {
  memset(ptr(m), 0, dnnl_memory_desc_get_size(md));
}

/* One training pass as the baseline times it: forward_training, the weights
 * into backward's layout (an optimizer changes them every step), zeroed
 * weight gradients, backward. */
static void dnnl_train(Dnnl *d) {
  exec(d->fwd, 8,
       (dnnl_exec_arg_t[]){{DNNL_ARG_SRC_LAYER, d->x},
                           {DNNL_ARG_SRC_ITER, d->s},
                           {DNNL_ARG_SRC_ITER_C, d->sc},
                           {DNNL_ARG_WEIGHTS_LAYER, d->fwl},
                           {DNNL_ARG_WEIGHTS_ITER, d->fwi},
                           {DNNL_ARG_BIAS, d->fb},
                           {DNNL_ARG_DST_LAYER, d->dst},
                           {DNNL_ARG_WORKSPACE, d->ws}});
  if (d->bwd_reorder) {
    exec(d->rwl, 2, (dnnl_exec_arg_t[]){{DNNL_ARG_FROM, d->uwl}, {DNNL_ARG_TO, d->bwl}});
    exec(d->rwi, 2, (dnnl_exec_arg_t[]){{DNNL_ARG_FROM, d->uwi}, {DNNL_ARG_TO, d->bwi}});
  }
  zero(d->dwl, qmd(d->bpd, DNNL_ARG_DIFF_WEIGHTS_LAYER));
  zero(d->dwi, qmd(d->bpd, DNNL_ARG_DIFF_WEIGHTS_ITER));
  zero(d->db, qmd(d->bpd, DNNL_ARG_DIFF_BIAS));
  exec(d->bwd, 15,
       (dnnl_exec_arg_t[]){{DNNL_ARG_SRC_LAYER, d->x},
                           {DNNL_ARG_SRC_ITER, d->s},
                           {DNNL_ARG_SRC_ITER_C, d->sc},
                           {DNNL_ARG_DIFF_SRC_ITER, d->ds},
                           {DNNL_ARG_DIFF_SRC_ITER_C, d->dsc},
                           {DNNL_ARG_WEIGHTS_LAYER, d->bwl},
                           {DNNL_ARG_WEIGHTS_ITER, d->bwi},
                           {DNNL_ARG_BIAS, d->bb},
                           {DNNL_ARG_DST_LAYER, d->dst},
                           {DNNL_ARG_WORKSPACE, d->ws},
                           {DNNL_ARG_DIFF_DST_LAYER, d->ddst},
                           {DNNL_ARG_DIFF_SRC_LAYER, d->dx},
                           {DNNL_ARG_DIFF_WEIGHTS_LAYER, d->dwl},
                           {DNNL_ARG_DIFF_WEIGHTS_ITER, d->dwi},
                           {DNNL_ARG_DIFF_BIAS, d->db}});
  CHECK(dnnl_stream_wait(strm));
}

static void dnnl_infer(Dnnl *d) {
  exec(d->inf, 5,
       (dnnl_exec_arg_t[]){{DNNL_ARG_SRC_LAYER, d->x},
                           {DNNL_ARG_WEIGHTS_LAYER, d->iwl},
                           {DNNL_ARG_WEIGHTS_ITER, d->iwi},
                           {DNNL_ARG_BIAS, d->ib},
                           {DNNL_ARG_DST_LAYER, d->idst}});
  CHECK(dnnl_stream_wait(strm));
}

static const float *rdata(rnnc_net *net, const char *name) {
  const float *p = rnnc_data(net, name);
  if (!p) rcheck(RNNC_EINPUT, name);
  return p;
}

/* rnnc's [4H, K] weight (PyTorch's layout) into oneDNN's ldigo [K][4][H]. */
static void to_ldigo(float *dst, const float *w, int k) {
  for (int i = 0; i < k; i++)
    for (int r = 0; r < G * H; r++) dst[(size_t)i * G * H + r] = w[(size_t)r * k + i];
}

/* max |a - b| over max |a|, b read with stride: b[i] is at b[(i % k) * G * H
 * + i / k] when k > 0 (an ldigo weight against rnnc's [4H, K]), else b[i]. */
static double reldiff(const float *a, const float *b, size_t n, int k) {
  double d = 0, m = 0;
  for (size_t i = 0; i < n; i++) {
    double y = k ? b[(i % k) * G * H + i / k] : b[i];
    d = fmax(d, fabs(a[i] - y));
    m = fmax(m, fabs(a[i]));
  }
  return m > 0 ? d / m : d;
}

/* Both sides' sum of h, relative difference. */
static double sum_diff(rnnc_net *net, dnnl_memory_t dst) {
  float l;
  rcheck(rnnc_get(net, "loss", &l, sizeof l), "loss");
  double loss = 0;
  const float *h = ptr(dst);
  for (size_t i = 0; i < (size_t)T * B * H; i++) loss += h[i];
  return fabs(loss - l) / fmax(fabs(loss), 1);
}

/* The loss and gradients of both sides, compared; the worst relative difference. */
static double validate(rnnc_net *net, Dnnl *d) {
  double worst = sum_diff(net, d->dst);

  /* oneDNN's weight gradients into ldigo, the user layout */
  dnnl_memory_t gwl = reorder(d->dwl, qmd(d->bpd, DNNL_ARG_DIFF_WEIGHTS_LAYER), &d->uwlmd, NULL);
  dnnl_memory_t gwi = reorder(d->dwi, qmd(d->bpd, DNNL_ARG_DIFF_WEIGHTS_ITER), &d->uwimd, NULL);
  dnnl_memory_t gb = reorder(d->db, qmd(d->bpd, DNNL_ARG_DIFF_BIAS), &d->ubmd, NULL);
  struct {
    const char *name;
    const float *theirs;
    size_t n;
    int k;
  } cmp[] = {
      {"grad.h.W_ih", ptr(gwl), (size_t)G * H * I, I},
      {"grad.h.W_hh", ptr(gwi), (size_t)G * H * H, H},
      {"grad.h.b_ih", ptr(gb), (size_t)G * H, 0},
      {"grad.h.b_hh", ptr(gb), (size_t)G * H, 0},
      {"grad.x", ptr(d->dx), (size_t)T * B * I, 0},
  };
  for (size_t i = 0; i < sizeof cmp / sizeof cmp[0]; i++) {
    double r = reldiff(rdata(net, cmp[i].name), cmp[i].theirs, cmp[i].n, cmp[i].k);
    if (r > 1e-4) {
      fprintf(stderr, "dnnl_side_by_side: %s differs from oneDNN's by %.3g of its largest magnitude\n",
              cmp[i].name, r);
      exit(1);
    }
    worst = fmax(worst, r);
  }
  dnnl_memory_destroy(gwl);
  dnnl_memory_destroy(gwi);
  dnnl_memory_destroy(gb);
  return worst;
}

typedef struct Times {
  double *rnnc, *dnnl, *ratio;
} Times;

/* Rounds of one rnnc run and one oneDNN run, the order alternating. */
static void rounds(int n, int warmup, rnnc_net *net, int grad, Dnnl *d, Times *t) {
  for (int r = -warmup; r < n; r++) {
    double tr = 0, td = 0;
    for (int k = 0; k < 2; k++) {
      double t0 = now();
      if ((k ^ (r & 1)) == 0)
        rcheck(grad ? rnnc_forward_backward(net) : rnnc_forward(net), "run"), tr = now() - t0;
      else
        (grad ? dnnl_train : dnnl_infer)(d), td = now() - t0;
    }
    if (r < 0) continue;
    t->rnnc[r] = tr;
    t->dnnl[r] = td;
    t->ratio[r] = td / tr;
  }
}

static void put(const char *key, Times *t, int n, double gflop) {
  double rmin = quantile(t->rnnc, n, 0), rmed = quantile(t->rnnc, n, 0.5);
  double dmin = quantile(t->dnnl, n, 0), dmed = quantile(t->dnnl, n, 0.5);
  printf(", \"%s\": {\"gflop\": %.4f, \"rnnc_ms_median\": %.3f, \"rnnc_ms_min\": %.3f, \"dnnl_ms_median\": %.3f, "
         "\"dnnl_ms_min\": %.3f, \"ratio_median\": %.4f, \"ratio_p25\": %.4f, \"ratio_p75\": %.4f}",
         key, gflop, rmed * 1e3, rmin * 1e3, dmed * 1e3, dmin * 1e3, quantile(t->ratio, n, 0.5),
         quantile(t->ratio, n, 0.25), quantile(t->ratio, n, 0.75));
}

int main(int argc, char **argv) {
  int n = argc > 1 ? atoi(argv[1]) : 20, warmup = argc > 2 ? atoi(argv[2]) : 2;
  if (argc > 3 || n < 1 || warmup < 0) {
    fprintf(stderr, "usage: OMP_NUM_THREADS=N dnnl_side_by_side [ROUNDS [WARMUP]]\n");
    return 2;
  }
  ctx = rnnc_open();
  if (!ctx) return fprintf(stderr, "dnnl_side_by_side: rnnc_open failed\n"), 1;
  rcheck(rnnc_load_file(ctx, RNNC_BENCH_MODELS "/c5_deepbench_lstm.rnn"), "load");
  rnnc_dim dims[] = {{"T", T}, {"B", B}, {"I", I}, {"H", H}};
  rnnc_net *net, *fnet;
  rcheck(rnnc_compile(ctx, "c5_deepbench_lstm", 4, dims, RNNC_GRAD, &net), "compile");
  rcheck(rnnc_compile(ctx, "c5_deepbench_lstm", 4, dims, 0, &fnet), "compile");
  rcheck(rnnc_init_params(net, 1), "init");
  rcheck(rnnc_share_params(fnet, net), "share");
  float *x = rnnc_data(net, "x");
  if (!x) rcheck(RNNC_EINPUT, "x");
  unsigned seed = 7;
  for (size_t i = 0; i < (size_t)T * B * I; i++) {
    seed = seed * 1103515245u + 12345u;
    x[i] = ((seed >> 8) & 0xffff) / 32768.0f - 1.0f;
  }
  rcheck(rnnc_set(fnet, "x", x, sizeof(float) * T * B * I), "x");

  CHECK(dnnl_engine_create(&eng, dnnl_cpu, 0));
  CHECK(dnnl_stream_create(&strm, eng, dnnl_stream_default_flags));
  Dnnl d;
  dnnl_setup(&d);
  memcpy(ptr(d.x), x, sizeof(float) * T * B * I);
  to_ldigo(ptr(d.uwl), rdata(net, "h.W_ih"), I);
  to_ldigo(ptr(d.uwi), rdata(net, "h.W_hh"), H);
  const float *bi = rdata(net, "h.b_ih"), *bh = rdata(net, "h.b_hh");
  for (int i = 0; i < G * H; i++) ptr(d.ub)[i] = bi[i] + bh[i];
  dnnl_weights(&d);

  rcheck(rnnc_forward_backward(net), "run");
  dnnl_train(&d);
  rcheck(rnnc_forward(fnet), "run");
  dnnl_infer(&d);
  double worst = fmax(validate(net, &d), sum_diff(fnet, d.idst));
  if (worst > 1e-4) {
    fprintf(stderr, "dnnl_side_by_side: the losses differ by %.3g\n", worst);
    return 1;
  }

  Times t = {malloc(n * sizeof(double)), malloc(n * sizeof(double)), malloc(n * sizeof(double))};
  const double fwd = 2.0 * T * B * (double)(I + H) * G * H / 1e9;
  const dnnl_version_t *v = dnnl_version();
  printf("{\"config\": \"C5\", \"T\": %d, \"B\": %d, \"I\": %d, \"H\": %d, \"threads\": %d, \"rounds\": %d, "
         "\"dnnl_version\": \"%d.%d.%d\", \"impl_fwd_training\": \"%s\", \"impl_backward\": \"%s\", "
         "\"impl_inference\": \"%s\", \"bwd_needs_weight_reorder\": %s, \"max_rel_diff\": %.3g",
         T, B, I, H, omp_get_max_threads(), n, v->major, v->minor, v->patch, impl(d.fpd), impl(d.bpd),
         impl(d.ipd), d.bwd_reorder ? "true" : "false", worst);
  rounds(n, warmup, net, 1, &d, &t);
  put("train", &t, n, 3 * fwd);
  rounds(n, warmup, fnet, 0, &d, &t);
  put("infer", &t, n, fwd);
  printf("}\n");
  rnnc_close(ctx);
  return 0;
}

/* dnnl_lstm_bench.c - bench/'s copy of the baseline program that set issue 3's
 * oneDNN target (../shared/baselines/dnnl_lstm_bench.c, unchanged below this
 * paragraph). bench/run.sh builds and runs it (C5 only) where oneDNN's headers
 * are installed (Debian libdnnl-dev; the library alone, libdnnl2, is not
 * enough to build it) and says "skipped" otherwise.
 *
 * oneDNN (C API, v2.x) RNN-primitive baseline for the
 * cell-stack part of the benchmark configurations (DESIGN.md): LSTM, LBR-GRU (the PyTorch/cuDNN GRU
 * variant) and tanh vanilla RNN, f32, unidirectional left-to-right.
 *
 * A stack of L layers with different input widths (E != H) cannot be one
 * oneDNN primitive (weights_layer is [L, D, SLC, G, DHC] with a single SLC),
 * so each layer is its own primitive, chained exactly as a framework would.
 * Initial states are zero (src_iter NULL) and final states are not used
 * (dst_iter NULL), like nn.LSTM(x, None) followed by a loss on the outputs.
 * Weight/bias/diff layouts are format "any"; user weights (ldigo) are
 * reordered into whatever the forward_training and backward primitive
 * descriptors want. The per-step cost of re-reordering weights into the
 * backward layout (needed after every SGD update when the layouts differ)
 * is timed and included in the train step.
 *
 * Timed per config:
 *   train = fwd_training (layers 1..L) + [weight reorder to bwd layout]
 *           + zero diff weights + backward (layers L..1), loss = sum(outputs)
 *           (diff_dst_layer = 1)
 *   infer = forward_inference (layers 1..L), weights in inference layout
 * FLOPs (matmul only): fwd = T * sum_l 2*B*(I_l+H)*G*H, train = 3*fwd.
 *
 * Threads: OMP_NUM_THREADS (Debian libdnnl2 is built with the OpenMP runtime).
 * Build: gcc -O2 -fopenmp dnnl_lstm_bench.c -o dnnl_lstm_bench -ldnnl
 * Run:   OMP_NUM_THREADS=1 ./dnnl_lstm_bench [steps] [warmup] [config-substring]
 * Output: one JSON object on stdout.
 */
#include <oneapi/dnnl/dnnl.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CHECK(f)                                                                    \
  do {                                                                              \
    dnnl_status_t s_ = (f);                                                         \
    if (s_ != dnnl_success) {                                                       \
      fprintf(stderr, "%s:%d: %s failed: status %d\n", __FILE__, __LINE__, #f, s_); \
      exit(2);                                                                      \
    }                                                                               \
  } while (0)

enum { LSTM = 0, GRU = 1, RNN = 2 };
static const char *cell_name[] = {"LSTM", "LBR_GRU", "RNN_TANH"};
static const int cell_gates[] = {4, 3, 1};

typedef struct {
  const char *name;
  const char *what;
  int cell, T, B, E, H, L;
  int train; /* 0: inference only */
} cfg_t;

static const cfg_t cfgs[] = {
    {"C5", "deepbench-lstm cell stack", LSTM, 25, 32, 1024, 1024, 1, 1},
    {"C1r", "charlm-small recurrent part", LSTM, 64, 32, 64, 128, 1, 1},
    {"C2r", "charlm-medium recurrent part", LSTM, 64, 64, 128, 512, 2, 1},
    {"C3r", "gru-medium recurrent part", GRU, 64, 64, 128, 512, 2, 1},
    {"C4r", "rnn-medium recurrent part", RNN, 64, 64, 128, 512, 2, 1},
    {"C6r", "generation step, cell stack only (B=1,T=1)", LSTM, 1, 1, 128, 512, 2, 0},
};

static dnnl_engine_t eng;
static dnnl_stream_t strm;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + 1e-9 * ts.tv_nsec;
}
static int cmpd(const void *x, const void *y) {
  double a = *(const double *)x, b = *(const double *)y;
  return (a > b) - (a < b);
}
static double median(double *v, int n) {
  double *c = malloc(n * sizeof(double));
  memcpy(c, v, n * sizeof(double));
  qsort(c, n, sizeof(double), cmpd);
  double m = n % 2 ? c[n / 2] : 0.5 * (c[n / 2 - 1] + c[n / 2]);
  free(c);
  return m;
}
static double minimum(double *v, int n) {
  double m = v[0];
  for (int i = 1; i < n; i++)
    if (v[i] < m) m = v[i];
  return m;
}

static dnnl_memory_desc_t md_tag(int nd, dnnl_dims_t d, dnnl_format_tag_t tag) {
  dnnl_memory_desc_t md;
  CHECK(dnnl_memory_desc_init_by_tag(&md, nd, d, dnnl_f32, tag));
  return md;
}
static dnnl_memory_t mem(const dnnl_memory_desc_t *md) {
  dnnl_memory_t m;
  CHECK(dnnl_memory_create(&m, md, eng, DNNL_MEMORY_ALLOCATE));
  return m;
}
static void fill(dnnl_memory_t m, const dnnl_memory_desc_t *md, float scale, unsigned seed) {
  void *h;
  CHECK(dnnl_memory_get_data_handle(m, &h));
  size_t n = dnnl_memory_desc_get_size(md) / sizeof(float);
  float *p = h;
  for (size_t i = 0; i < n; i++) {
    seed = seed * 1103515245u + 12345u;
    p[i] = scale * (((seed >> 8) & 0xffff) / 32768.0f - 1.0f);
  }
}
static void fill_const(dnnl_memory_t m, const dnnl_memory_desc_t *md, float v) {
  void *h;
  CHECK(dnnl_memory_get_data_handle(m, &h));
  size_t n = dnnl_memory_desc_get_size(md) / sizeof(float);
  float *p = h;
  for (size_t i = 0; i < n; i++) p[i] = v;
}
static void zero(dnnl_memory_t m, const dnnl_memory_desc_t *md) {
  void *h;
  CHECK(dnnl_memory_get_data_handle(m, &h));
  memset(h, 0, dnnl_memory_desc_get_size(md));
}
static const dnnl_memory_desc_t *qmd(dnnl_primitive_desc_t pd, int arg) {
  return dnnl_primitive_desc_query_md(pd, dnnl_query_exec_arg_md, arg);
}
static const char *impl(dnnl_primitive_desc_t pd) {
  const char *s = NULL;
  CHECK(dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &s));
  return s;
}
static const char *fmt_desc(const dnnl_memory_desc_t *md) {
  if (md->format_kind == dnnl_format_kind_rnn_packed) return "rnn_packed";
  if (md->format_kind != dnnl_blocked) return "other";
  /* plain 5D weights: ldigo has strides decreasing in dims order */
  const dnnl_dims_t *st = &md->format_desc.blocking.strides;
  if (md->ndims == 5) {
    if ((*st)[2] >= (*st)[3] && (*st)[3] >= (*st)[4]) return "ldigo";
    if ((*st)[3] >= (*st)[4] && (*st)[4] >= (*st)[2]) return "ldgoi";
  }
  return "blocked";
}

/* reorder src memory (md s) into a new memory of md d (returns new memory and
 * the reorder primitive so it can be re-run per step) */
static dnnl_memory_t reorder_to(dnnl_memory_t src, const dnnl_memory_desc_t *s, const dnnl_memory_desc_t *d,
                                dnnl_primitive_t *prim_out) {
  dnnl_memory_t dst = mem(d);
  dnnl_primitive_desc_t rpd;
  CHECK(dnnl_reorder_primitive_desc_create(&rpd, s, eng, d, eng, NULL));
  dnnl_primitive_t r;
  CHECK(dnnl_primitive_create(&r, rpd));
  dnnl_exec_arg_t a[2] = {{DNNL_ARG_FROM, src}, {DNNL_ARG_TO, dst}};
  CHECK(dnnl_primitive_execute(r, strm, 2, a));
  CHECK(dnnl_stream_wait(strm));
  dnnl_primitive_desc_destroy(rpd);
  if (prim_out)
    *prim_out = r;
  else
    dnnl_primitive_destroy(r);
  return dst;
}

typedef struct {
  int I;
  dnnl_primitive_desc_t fpd, bpd, ipd;
  dnnl_primitive_t fwd, bwd, inf;
  dnnl_memory_t src, dst, ws; /* src = previous layer's dst */
  dnnl_memory_t uwl, uwi, ub; /* user weights (ldigo/ldgo) */
  dnnl_memory_t fwl, fwi, fb; /* fwd layout */
  dnnl_memory_t bwl, bwi, bb; /* bwd layout */
  dnnl_primitive_t rwl, rwi;  /* reorders user->bwd layout (per step) */
  dnnl_memory_t iwl, iwi, ib; /* inference layout */
  dnnl_memory_t dsrc, ddst, dwl, dwi, dbias;
  dnnl_memory_t idst;
  int bwd_reorder;
} layer_t;

static void rnn_desc(dnnl_rnn_desc_t *d, int cell, dnnl_prop_kind_t pk, const dnnl_memory_desc_t *src,
                     const dnnl_memory_desc_t *wl, const dnnl_memory_desc_t *wi, const dnnl_memory_desc_t *b,
                     const dnnl_memory_desc_t *dst) {
  dnnl_rnn_direction_t dir = dnnl_unidirectional_left2right;
  if (cell == LSTM)
    CHECK(dnnl_lstm_forward_desc_init(d, pk, dir, src, NULL, NULL, wl, wi, b, dst, NULL, NULL, 0));
  else if (cell == GRU)
    CHECK(dnnl_lbr_gru_forward_desc_init(d, pk, dir, src, NULL, wl, wi, b, dst, NULL, 0));
  else
    CHECK(dnnl_vanilla_rnn_forward_desc_init(d, pk, dnnl_eltwise_tanh, dir, src, NULL, wl, wi, b, dst, NULL, 0,
                                             0.f, 0.f));
}
static void rnn_bwd_desc(dnnl_rnn_desc_t *d, int cell, const dnnl_memory_desc_t *src, const dnnl_memory_desc_t *wl,
                         const dnnl_memory_desc_t *wi, const dnnl_memory_desc_t *b, const dnnl_memory_desc_t *dst,
                         const dnnl_memory_desc_t *dsrc, const dnnl_memory_desc_t *dwl,
                         const dnnl_memory_desc_t *dwi, const dnnl_memory_desc_t *db,
                         const dnnl_memory_desc_t *ddst) {
  dnnl_rnn_direction_t dir = dnnl_unidirectional_left2right;
  if (cell == LSTM)
    CHECK(dnnl_lstm_backward_desc_init(d, dnnl_backward, dir, src, NULL, NULL, wl, wi, b, dst, NULL, NULL, dsrc,
                                       NULL, NULL, dwl, dwi, db, ddst, NULL, NULL, 0));
  else if (cell == GRU)
    CHECK(dnnl_lbr_gru_backward_desc_init(d, dnnl_backward, dir, src, NULL, wl, wi, b, dst, NULL, dsrc, NULL, dwl,
                                          dwi, db, ddst, NULL, 0));
  else
    CHECK(dnnl_vanilla_rnn_backward_desc_init(d, dnnl_backward, dnnl_eltwise_tanh, dir, src, NULL, wl, wi, b, dst,
                                              NULL, dsrc, NULL, dwl, dwi, db, ddst, NULL, 0, 0.f, 0.f));
}

static void exec(dnnl_primitive_t p, int n, dnnl_exec_arg_t *a) { CHECK(dnnl_primitive_execute(p, strm, n, a)); }

static void run_cfg(const cfg_t *c, int steps, int warmup, int first) {
  int G = cell_gates[c->cell], T = c->T, B = c->B, H = c->H, L = c->L;
  int Gb = c->cell == GRU ? G + 1 : G; /* LBR GRU has an extra bias row */
  layer_t ly[8];
  double fwd_flops = 0;
  dnnl_memory_t x0 = NULL;
  dnnl_memory_desc_t x0md;
  {
    dnnl_dims_t d = {T, B, c->E};
    x0md = md_tag(3, d, dnnl_tnc);
    x0 = mem(&x0md);
    fill(x0, &x0md, 1.0f, 7);
  }
  for (int l = 0; l < L; l++) {
    layer_t *y = &ly[l];
    memset(y, 0, sizeof(*y));
    int I = y->I = l == 0 ? c->E : H;
    fwd_flops += 2.0 * T * B * (double)(I + H) * G * H;
    dnnl_dims_t ds = {T, B, I}, dd = {T, B, H}, dwl = {1, 1, I, G, H}, dwi = {1, 1, H, G, H}, db = {1, 1, Gb, H};
    dnnl_memory_desc_t src = md_tag(3, ds, dnnl_tnc), dst = md_tag(3, dd, dnnl_tnc);
    dnnl_memory_desc_t wl = md_tag(5, dwl, dnnl_format_tag_any), wi = md_tag(5, dwi, dnnl_format_tag_any);
    dnnl_memory_desc_t b = md_tag(4, db, dnnl_format_tag_any);
    dnnl_memory_desc_t uwl = md_tag(5, dwl, dnnl_ldigo), uwi = md_tag(5, dwi, dnnl_ldigo), ub = md_tag(4, db, dnnl_ldgo);
    y->uwl = mem(&uwl);
    y->uwi = mem(&uwi);
    y->ub = mem(&ub);
    fill(y->uwl, &uwl, 0.05f, 11 + l);
    fill(y->uwi, &uwi, 0.05f, 21 + l);
    fill(y->ub, &ub, 0.05f, 31 + l);
    y->src = l == 0 ? x0 : ly[l - 1].dst;

    /* inference primitive */
    dnnl_rnn_desc_t d;
    rnn_desc(&d, c->cell, dnnl_forward_inference, &src, &wl, &wi, &b, &dst);
    CHECK(dnnl_primitive_desc_create(&y->ipd, &d, NULL, eng, NULL));
    CHECK(dnnl_primitive_create(&y->inf, y->ipd));
    y->iwl = reorder_to(y->uwl, &uwl, qmd(y->ipd, DNNL_ARG_WEIGHTS_LAYER), NULL);
    y->iwi = reorder_to(y->uwi, &uwi, qmd(y->ipd, DNNL_ARG_WEIGHTS_ITER), NULL);
    y->ib = reorder_to(y->ub, &ub, qmd(y->ipd, DNNL_ARG_BIAS), NULL);
    y->idst = mem(qmd(y->ipd, DNNL_ARG_DST_LAYER));

    if (c->train) {
      rnn_desc(&d, c->cell, dnnl_forward_training, &src, &wl, &wi, &b, &dst);
      CHECK(dnnl_primitive_desc_create(&y->fpd, &d, NULL, eng, NULL));
      CHECK(dnnl_primitive_create(&y->fwd, y->fpd));
      y->fwl = reorder_to(y->uwl, &uwl, qmd(y->fpd, DNNL_ARG_WEIGHTS_LAYER), NULL);
      y->fwi = reorder_to(y->uwi, &uwi, qmd(y->fpd, DNNL_ARG_WEIGHTS_ITER), NULL);
      y->fb = reorder_to(y->ub, &ub, qmd(y->fpd, DNNL_ARG_BIAS), NULL);
      y->dst = mem(qmd(y->fpd, DNNL_ARG_DST_LAYER));
      y->ws = mem(qmd(y->fpd, DNNL_ARG_WORKSPACE));

      dnnl_rnn_desc_t bd;
      dnnl_memory_desc_t dsrc = src, ddst = dst;
      rnn_bwd_desc(&bd, c->cell, &src, &wl, &wi, &b, &dst, &dsrc, &wl, &wi, &b, &ddst);
      CHECK(dnnl_primitive_desc_create(&y->bpd, &bd, NULL, eng, y->fpd));
      CHECK(dnnl_primitive_create(&y->bwd, y->bpd));
      const dnnl_memory_desc_t *bwl = qmd(y->bpd, DNNL_ARG_WEIGHTS_LAYER), *bwi = qmd(y->bpd, DNNL_ARG_WEIGHTS_ITER);
      y->bwd_reorder = !dnnl_memory_desc_equal(bwl, qmd(y->fpd, DNNL_ARG_WEIGHTS_LAYER)) ||
                       !dnnl_memory_desc_equal(bwi, qmd(y->fpd, DNNL_ARG_WEIGHTS_ITER));
      y->bwl = reorder_to(y->uwl, &uwl, bwl, &y->rwl);
      y->bwi = reorder_to(y->uwi, &uwi, bwi, &y->rwi);
      y->bb = reorder_to(y->ub, &ub, qmd(y->bpd, DNNL_ARG_BIAS), NULL);
      y->dsrc = mem(qmd(y->bpd, DNNL_ARG_DIFF_SRC_LAYER));
      y->dwl = mem(qmd(y->bpd, DNNL_ARG_DIFF_WEIGHTS_LAYER));
      y->dwi = mem(qmd(y->bpd, DNNL_ARG_DIFF_WEIGHTS_ITER));
      y->dbias = mem(qmd(y->bpd, DNNL_ARG_DIFF_BIAS));
    } else {
      y->dst = y->idst;
    }
    if (l == 0) {
      /* inference chain reads x0 too */
    }
  }
  /* inference chain: layer l reads previous inference dst */
  if (c->train) {
    for (int l = L - 1; l >= 0; l--) {
      layer_t *y = &ly[l];
      if (l == L - 1) {
        y->ddst = mem(qmd(y->bpd, DNNL_ARG_DIFF_DST_LAYER));
        fill_const(y->ddst, qmd(y->bpd, DNNL_ARG_DIFF_DST_LAYER), 1.0f); /* loss = sum(outputs) */
      } else {
        y->ddst = ly[l + 1].dsrc;
      }
    }
  }

  /* ---- inference timing ---- */
  double *ti = malloc((steps + warmup) * sizeof(double));
  int isteps = steps, iwarm = warmup;
  if (!c->train) { /* latency config: many short calls */
    isteps = 2000;
    iwarm = 100;
    ti = realloc(ti, (isteps + iwarm) * sizeof(double));
  }
  for (int s = 0; s < isteps + iwarm; s++) {
    double t0 = now();
    for (int l = 0; l < L; l++) {
      layer_t *y = &ly[l];
      dnnl_memory_t in = l == 0 ? x0 : ly[l - 1].idst;
      dnnl_exec_arg_t a[] = {{DNNL_ARG_SRC_LAYER, in},      {DNNL_ARG_WEIGHTS_LAYER, y->iwl},
                             {DNNL_ARG_WEIGHTS_ITER, y->iwi}, {DNNL_ARG_BIAS, y->ib},
                             {DNNL_ARG_DST_LAYER, y->idst}};
      exec(y->inf, 5, a);
    }
    CHECK(dnnl_stream_wait(strm));
    if (s >= iwarm) ti[s - iwarm] = now() - t0;
  }
  double inf_med = median(ti, isteps), inf_min = minimum(ti, isteps);

  printf("%s  {\"config\": \"%s\", \"what\": \"%s\", \"cell\": \"%s\", \"T\": %d, \"B\": %d, \"E\": %d, \"H\": %d, "
         "\"L\": %d, \"threads\": %d, \"fwd_gflop\": %.4f,\n",
         first ? "" : ",\n", c->name, c->what, cell_name[c->cell], T, B, c->E, H, L, omp_get_max_threads(),
         fwd_flops / 1e9);
  printf("   \"impl_inference\": \"%s\", \"weights_layout_inference\": \"%s\",\n", impl(ly[0].ipd),
         fmt_desc(qmd(ly[0].ipd, DNNL_ARG_WEIGHTS_LAYER)));
  printf("   \"infer\": {\"n\": %d, \"ms_median\": %.4f, \"ms_min\": %.4f, \"gflops\": %.2f, \"tokens_per_s\": %.1f}",
         isteps, inf_med * 1e3, inf_min * 1e3, fwd_flops / inf_med / 1e9, (double)T * B / inf_med);
  free(ti);

  if (c->train) {
    double *tt = malloc(steps * sizeof(double)), *tf = malloc(steps * sizeof(double)),
           *tb = malloc(steps * sizeof(double)), *tr = malloc(steps * sizeof(double));
    for (int s = 0; s < steps + warmup; s++) {
      double t0 = now();
      for (int l = 0; l < L; l++) {
        layer_t *y = &ly[l];
        dnnl_exec_arg_t a[] = {{DNNL_ARG_SRC_LAYER, y->src},       {DNNL_ARG_WEIGHTS_LAYER, y->fwl},
                               {DNNL_ARG_WEIGHTS_ITER, y->fwi},    {DNNL_ARG_BIAS, y->fb},
                               {DNNL_ARG_DST_LAYER, y->dst},       {DNNL_ARG_WORKSPACE, y->ws}};
        exec(y->fwd, 6, a);
      }
      CHECK(dnnl_stream_wait(strm));
      double t1 = now();
      /* weights changed by the optimizer each step: refresh bwd-layout copies */
      for (int l = 0; l < L; l++) {
        layer_t *y = &ly[l];
        if (!y->bwd_reorder) continue;
        dnnl_exec_arg_t a1[2] = {{DNNL_ARG_FROM, y->uwl}, {DNNL_ARG_TO, y->bwl}};
        dnnl_exec_arg_t a2[2] = {{DNNL_ARG_FROM, y->uwi}, {DNNL_ARG_TO, y->bwi}};
        exec(y->rwl, 2, a1);
        exec(y->rwi, 2, a2);
      }
      CHECK(dnnl_stream_wait(strm));
      double t2 = now();
      for (int l = L - 1; l >= 0; l--) {
        layer_t *y = &ly[l];
        zero(y->dwl, qmd(y->bpd, DNNL_ARG_DIFF_WEIGHTS_LAYER));
        zero(y->dwi, qmd(y->bpd, DNNL_ARG_DIFF_WEIGHTS_ITER));
        zero(y->dbias, qmd(y->bpd, DNNL_ARG_DIFF_BIAS));
        dnnl_exec_arg_t a[] = {{DNNL_ARG_SRC_LAYER, y->src},
                               {DNNL_ARG_WEIGHTS_LAYER, y->bwl},
                               {DNNL_ARG_WEIGHTS_ITER, y->bwi},
                               {DNNL_ARG_BIAS, y->bb},
                               {DNNL_ARG_DST_LAYER, y->dst},
                               {DNNL_ARG_WORKSPACE, y->ws},
                               {DNNL_ARG_DIFF_DST_LAYER, y->ddst},
                               {DNNL_ARG_DIFF_SRC_LAYER, y->dsrc},
                               {DNNL_ARG_DIFF_WEIGHTS_LAYER, y->dwl},
                               {DNNL_ARG_DIFF_WEIGHTS_ITER, y->dwi},
                               {DNNL_ARG_DIFF_BIAS, y->dbias}};
        exec(y->bwd, 11, a);
      }
      CHECK(dnnl_stream_wait(strm));
      double t3 = now();
      if (s >= warmup) {
        int k = s - warmup;
        tt[k] = t3 - t0;
        tf[k] = t1 - t0;
        tr[k] = t2 - t1;
        tb[k] = t3 - t2;
      }
    }
    /* sanity: finite gradient */
    void *h;
    CHECK(dnnl_memory_get_data_handle(ly[0].dwi, &h));
    float g0 = ((float *)h)[0];
    double tm = median(tt, steps);
    printf(",\n   \"impl_fwd_training\": \"%s\", \"impl_backward\": \"%s\", "
           "\"weights_layout_fwd\": \"%s\", \"weights_layout_bwd\": \"%s\", \"bwd_needs_weight_reorder\": %s,\n",
           impl(ly[0].fpd), impl(ly[0].bpd), fmt_desc(qmd(ly[0].fpd, DNNL_ARG_WEIGHTS_LAYER)),
           fmt_desc(qmd(ly[0].bpd, DNNL_ARG_WEIGHTS_LAYER)), ly[0].bwd_reorder ? "true" : "false");
    printf("   \"train\": {\"n\": %d, \"ms_median\": %.3f, \"ms_min\": %.3f, \"gflops\": %.2f, \"tokens_per_s\": %.1f, "
           "\"fwd_ms_median\": %.3f, \"weight_reorder_ms_median\": %.3f, \"bwd_ms_median\": %.3f, "
           "\"fwd_gflops\": %.2f, \"bwd_gflops\": %.2f, \"dW_iter0\": %g}}",
           steps, tm * 1e3, minimum(tt, steps) * 1e3, 3 * fwd_flops / tm / 1e9, (double)T * B / tm,
           median(tf, steps) * 1e3, median(tr, steps) * 1e3, median(tb, steps) * 1e3,
           fwd_flops / median(tf, steps) / 1e9, 2 * fwd_flops / median(tb, steps) / 1e9, g0);
    free(tt);
    free(tf);
    free(tb);
    free(tr);
  } else {
    printf("}");
  }
  fflush(stdout);
  /* resources are leaked deliberately: process exits after the run */
}

int main(int argc, char **argv) {
  int steps = argc > 1 ? atoi(argv[1]) : 20;
  int warmup = argc > 2 ? atoi(argv[2]) : 3;
  const char *only = argc > 3 ? argv[3] : NULL;
  CHECK(dnnl_engine_create(&eng, dnnl_cpu, 0));
  CHECK(dnnl_stream_create(&strm, eng, dnnl_stream_default_flags));
  const dnnl_version_t *v = dnnl_version();
  const char *omp = getenv("OMP_NUM_THREADS");
  printf("{\"dnnl_version\": \"%d.%d.%d\", \"cpu_runtime\": %u, \"omp_max_threads\": %d, "
         "\"env_OMP_NUM_THREADS\": %s%s%s, \"configs\": [\n",
         v->major, v->minor, v->patch, v->cpu_runtime, omp_get_max_threads(), omp ? "\"" : "", omp ? omp : "null",
         omp ? "\"" : "");
  int first = 1;
  for (size_t i = 0; i < sizeof(cfgs) / sizeof(cfgs[0]); i++) {
    if (only && !strstr(only, cfgs[i].name)) continue;
    run_cfg(&cfgs[i], steps, warmup, first);
    first = 0;
  }
  printf("\n]}\n");
  return 0;
}

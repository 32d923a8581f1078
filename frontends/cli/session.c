/* session.c — what `rnnc train`, `eval` and `sample` share: the model opened
 * through the public API (include/rnnc.h), the roles of its inputs read off
 * the graph (which input holds token ids, targets, a mask, features, labels),
 * and the dimensions to compile it with. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* Is input node i read as softmax target, and by which node? */
static const MNode *target_of(const Model *md, int i)
{
  for (int k = 0; k < md->nnode; k++)
    if (md->node[k].kind == M_SOFTMAX && md->node[k].target == i)
      return &md->node[k];
  return NULL;
}

/* The roles of md's inputs and its vocabulary dim. */
static void roles(Session *s)
{
  const Model *md = s->md;
  for (int i = 0; i < md->nnode; i++) {
    const MNode *n = &md->node[i];
    if (n->kind == M_CELL && n->backward)
      s->backward = 1;
    if ((n->kind == M_EMBEDDING || n->kind == M_ONEHOT) && !s->vocabdim && !s->vocabn) {
      Dim v = n->size[0];
      if (v.nterm == 1 && v.c == 0 && v.t[0].k == 1)
        s->vocabdim = v.t[0].sym;
      else if (dim_isconst(v))
        s->vocabn = v.c;
    }
    if (n->kind == M_SOFTMAX && i == md->loss) {
      Dim k = n->size[0];
      if (k.nterm == 1 && k.c == 0 && k.t[0].k == 1)
        s->classdim = k.t[0].sym;
      else if (dim_isconst(k))
        s->classn = k.c;
    }
    if (n->kind == M_PROBS && n->arg[0] == md->loss)
      for (int k = 0; k < md->noutput; k++)
        if (md->output[k] == i)
          s->probs = n->name; /* an output: classifiers get an accuracy */
    if (n->kind != M_INPUT)
      continue;
    const MNode *sm = target_of(md, i);
    if (n->dtype == DT_I32 && sm) {
      if (n->hastime)
        s->targets = n->name;
      else
        s->labels = n->name;
      s->ignore = sm->hasignore && sm->ignore == -1;
    } else if (n->dtype == DT_I32 && n->hastime) {
      s->tokens = n->name;
    } else if (mnode_is_mask(n)) {
      s->mask = n->name;
    } else if (n->dtype == DT_F32 && n->hastime && n->shape.rank == 3) {
      s->features = n->name;
    }
  }
}

int session_open(Session *s, const char *path, const char *model)
{
  memset(s, 0, sizeof *s);
  s->path = path;
  s->ctx = rnnc_open();
  if (!s->ctx)
    return user_error("out of memory");
  if (rnnc_load_file(s->ctx, path) != RNNC_OK) {
    const char *msg = rnnc_errmsg(s->ctx);
    fputs(msg, stderr);
    if (!*msg || msg[strlen(msg) - 1] != '\n')
      fputc('\n', stderr);
    return EXIT_USER;
  }
  Module *m = s->ctx->m;
  if (model) {
    for (int i = m->nmodel - 1; i >= 0 && !s->md; i--)
      if (strcmp(m->model[i]->name, model) == 0)
        s->md = m->model[i];
    if (!s->md)
      return user_error("%s has no model '%s'", path, model);
  } else if (m->nmodel == 1) {
    s->md = m->model[0];
  } else {
    return user_error("%s has %s; name one with --model", path, m->nmodel ? "several models" : "no model");
  }
  roles(s);
  return EXIT_OK;
}

void session_close(Session *s)
{
  rnnc_close(s->ctx);
  memset(s, 0, sizeof *s);
}

int session_dims(Session *s, const Opts *o, long V, long T, long B, rnnc_dim *dims, int cap, int *n)
{
  *n = 0;
  int vgiven = 0, kgiven = 0;
  long K = s->nclass;
  int k = 0;
  for (int i = 0; i < o->nspec; i++)
    if (strcmp(o->spec[i].name, "--dim") == 0)
      k = i;
  for (int i = 0; i < o->count[k]; i++) {
    const char *a = o->val[k][i], *eq = strchr(a, '=');
    char *end;
    errno = 0;
    long v = eq ? strtol(eq + 1, &end, 10) : 0;
    if (!eq || eq == a || !eq[1] || *end || errno || v < 1)
      return usage_error(o->cmd, "--dim wants NAME=N with N >= 1, not '%s'", a);
    if (*n + 3 > cap)
      return usage_error(o->cmd, "too many --dim options");
    size_t len = (size_t)(eq - a);
    if ((len == 1 && (a[0] == 'T' || a[0] == 'B')))
      return usage_error(o->cmd, "give %c with --%s, not --dim", a[0], a[0] == 'T' ? "seq" : "batch");
    if (s->vocabdim && strlen(s->vocabdim) == len && strncmp(a, s->vocabdim, len) == 0) {
      if (V > 0 && v != V)
        return user_error("--dim %s: the vocabulary has %ld tokens, not %ld", a, V, v);
      vgiven = 1;
    }
    if (s->classdim && strlen(s->classdim) == len && strncmp(a, s->classdim, len) == 0) {
      if (K > 0 && v != K)
        return user_error("--dim %s: the data has %ld classes, not %ld", a, K, v);
      kgiven = 1;
    }
    dims[*n] = (rnnc_dim){strndup(a, len), v};
    if (!dims[*n].name)
      return user_error("out of memory");
    (*n)++;
  }
  if (V > 0 && s->vocabn && s->vocabn != V)
    return user_error("model '%s' has a vocabulary of %ld tokens written in it, the data %ld: write "
                      "embedding(tokens, V, E) with a dimension V to take it from the data",
                      s->md->name, s->vocabn, V);
  if (K > 0 && s->classn && s->classn != K)
    return user_error("model '%s' has %ld classes written in it, the data %ld: write softmax(h, K, ...) with a "
                      "dimension K to take it from the data",
                      s->md->name, s->classn, K);
  if (V > 0 && s->vocabdim && !vgiven)
    dims[(*n)++] = (rnnc_dim){strdup(s->vocabdim), V};
  if (K > 0 && s->classdim && !kgiven && !(s->vocabdim && strcmp(s->classdim, s->vocabdim) == 0))
    dims[(*n)++] = (rnnc_dim){strdup(s->classdim), K};
  if (T > 0)
    dims[(*n)++] = (rnnc_dim){strdup("T"), T};
  if (B > 0)
    dims[(*n)++] = (rnnc_dim){strdup("B"), B};
  for (int i = 0; i < *n; i++)
    if (!dims[i].name)
      return user_error("out of memory");
  return EXIT_OK;
}

void textdata_free(TextData *d)
{
  vocab_free(&d->vocab);
  classes_free(&d->classes);
  dataset_free(&d->train);
  dataset_free(&d->valid);
  memset(d, 0, sizeof *d);
}

static int parse_level(const char *s, int *kind)
{
  if (!s || strcmp(s, "char") == 0)
    *kind = VOCAB_CHAR;
  else if (strcmp(s, "byte") == 0)
    *kind = VOCAB_BYTE;
  else if (strcmp(s, "word") == 0)
    *kind = VOCAB_WORD;
  else
    return 0;
  return 1;
}

/* The training set is all of --data (moved out of *all) when a --valid file
 * gave the validation set or frac is 0; else the last frac of it is split
 * off for validation. */
static int take_sets(TextData *d, Dataset *all, int validfile, double frac, uint64_t seed, char *err,
                     size_t errlen)
{
  if (validfile || frac <= 0) {
    d->train = *all;
    *all = (Dataset){0};
    return RNNC_OK;
  }
  return dataset_split(all, frac, seed, &d->train, &d->valid, err, errlen);
}

/* Text data: the vocabulary (the checkpoint's when resuming, else built from
 * --data), the training and validation sets. --level, --min-count, --data,
 * --valid. */
int textdata_load(const Opts *o, const char *vocabjson, int lines, double frac, uint64_t seed, TextData *d)
{
  char err[1024];
  int kind;
  if (!parse_level(opt_str(o, "--level"), &kind))
    return usage_error(o->cmd, "--level wants char, byte or word, not '%s'", opt_str(o, "--level"));
  uint64_t mincount;
  if (opt_u64(o, "--min-count", 1, &mincount))
    return EXIT_USAGE;
  const char *path = opt_str(o, "--data"), *vpath = opt_given(o, "--valid") ? opt_str(o, "--valid") : NULL;
  char *text = NULL, *vtext = NULL;
  size_t len = 0, vlen = 0;
  int st = data_read_file(path, &text, &len, err, sizeof err);
  if (st == RNNC_OK && vpath)
    st = data_read_file(vpath, &vtext, &vlen, err, sizeof err);
  if (st == RNNC_OK) {
    if (vocabjson)
      st = vocab_from_json(&d->vocab, vocabjson, err, sizeof err);
    else
      st = vocab_build(&d->vocab, kind, path, text, len, (int)mincount, err, sizeof err);
  }
  int dskind = lines ? DS_LINES : DS_STREAM;
  Dataset all = {0};
  if (st == RNNC_OK)
    st = dataset_text(&all, dskind, &d->vocab, path, text, len, err, sizeof err);
  if (st == RNNC_OK && vpath)
    st = dataset_text(&d->valid, dskind, &d->vocab, vpath, vtext, vlen, err, sizeof err);
  if (st == RNNC_OK)
    st = take_sets(d, &all, vpath != NULL, frac, seed, err, sizeof err);
  d->hasvalid = st == RNNC_OK && (vpath || frac > 0);
  dataset_free(&all);
  free(text);
  free(vtext);
  return st == RNNC_OK ? EXIT_OK : user_error("%s", err);
}

/* Labelled lines: the vocabulary from the text column (or vocabjson), the
 * classes from the labels (or classesjson), the sets as textdata_load's. */
int labeldata_load(const Opts *o, const char *vocabjson, const char *classesjson, int lab, double frac,
                   uint64_t seed, TextData *d)
{
  char err[1024];
  int kind;
  const char *lv = opt_str(o, "--level");
  if (lab == LAB_TAG) {
    if (lv && strcmp(lv, "word") != 0)
      return usage_error(o->cmd, "tagged data (TOKEN<TAB>TAG per line) is word level, not --level %s", lv);
    kind = VOCAB_WORD;
  } else if (!parse_level(lv, &kind)) {
    return usage_error(o->cmd, "--level wants char, byte or word, not '%s'", lv);
  }
  uint64_t mincount;
  if (opt_u64(o, "--min-count", 1, &mincount))
    return EXIT_USAGE;
  const char *path = opt_str(o, "--data"), *vpath = opt_given(o, "--valid") ? opt_str(o, "--valid") : NULL;
  const char *from = classesjson ? "the checkpoint's" : "the training data's";
  char *text = NULL, *vtext = NULL;
  size_t len = 0, vlen = 0;
  d->lab = lab;
  int st = data_read_file(path, &text, &len, err, sizeof err);
  if (st == RNNC_OK && vpath)
    st = data_read_file(vpath, &vtext, &vlen, err, sizeof err);
  if (st == RNNC_OK && vocabjson)
    st = vocab_from_json(&d->vocab, vocabjson, err, sizeof err);
  else if (st == RNNC_OK)
    st = labeled_vocab(&d->vocab, lab, kind, path, text, len, (int)mincount, err, sizeof err);
  if (st == RNNC_OK && classesjson)
    st = classes_from_json(&d->classes, classesjson, err, sizeof err);
  else if (st == RNNC_OK)
    st = classes_build(&d->classes, lab, path, text, len, err, sizeof err);
  Dataset all = {0};
  if (st == RNNC_OK)
    st = dataset_labeled(&all, lab, &d->vocab, &d->classes, from, path, text, len, err, sizeof err);
  if (st == RNNC_OK && vpath)
    st = dataset_labeled(&d->valid, lab, &d->vocab, &d->classes, from, vpath, vtext, vlen, err, sizeof err);
  if (st == RNNC_OK)
    st = take_sets(d, &all, vpath != NULL, frac, seed, err, sizeof err);
  d->hasvalid = st == RNNC_OK && (vpath || frac > 0);
  dataset_free(&all);
  free(text);
  free(vtext);
  return st == RNNC_OK ? EXIT_OK : user_error("%s", err);
}

long textdata_longest(const TextData *d)
{
  size_t most = 0;
  const Dataset *set[] = {&d->train, &d->valid};
  for (int k = 0; k < 2; k++)
    for (size_t i = 0; set[k]->off && i < set[k]->nseq; i++)
      if (set[k]->off[i + 1] - set[k]->off[i] > most)
        most = set[k]->off[i + 1] - set[k]->off[i];
  return (long)most;
}

int feed_batch(const Session *s, rnnc_net *net, const Batch *b)
{
  size_t tb = (size_t)b->T * (size_t)b->B;
  int st = RNNC_OK;
  if (b->x) {
    int64_t dim[4];
    int rank;
    st = rnnc_tensor_shape(net, s->features, NULL, &rank, dim);
    if (st == RNNC_OK)
      st = rnnc_set(net, s->features, b->x, tb * (size_t)dim[rank - 1] * sizeof(float));
    if (st == RNNC_OK)
      st = rnnc_set(net, s->labels, b->label, (size_t)b->B * sizeof(int32_t));
    return st;
  }
  st = rnnc_set(net, s->tokens, b->tokens, tb * sizeof(int32_t));
  if (st == RNNC_OK && s->targets)
    st = rnnc_set(net, s->targets, b->targets, tb * sizeof(int32_t));
  if (st == RNNC_OK && s->labels && b->label)
    st = rnnc_set(net, s->labels, b->label, (size_t)b->B * sizeof(int32_t));
  if (st == RNNC_OK && s->mask) {
    float *m = rnnc_data(net, s->mask);
    for (size_t i = 0; m && i < tb; i++)
      m[i] = b->mask ? b->mask[i] : 1.0f;
  }
  return st;
}

int eval_tail_net(const Session *s, rnnc_net *net, const Dataset *d, int ndims, const rnnc_dim *dims, long T,
                  long B, int flags, int nth, rnnc_net **tail)
{
  *tail = NULL;
  int steps = stream_tail(d, (int)T, (int)B);
  if (!steps)
    return EXIT_OK;
  rnnc_dim *dt = malloc((size_t)ndims * sizeof *dt);
  if (!dt)
    return user_error("out of memory");
  for (int i = 0; i < ndims; i++) {
    dt[i] = dims[i];
    if (strcmp(dims[i].name, "T") == 0)
      dt[i].value = steps;
  }
  int st = rnnc_compile(s->ctx, s->md->name, ndims, dt, flags, tail);
  free(dt);
  if (st == RNNC_OK && ((st = rnnc_share_params(*tail, net)) || (st = rnnc_set_threads(*tail, nth)))) {
    rnnc_net_free(*tail);
    *tail = NULL;
  }
  return st ? user_error("%s", rnnc_errmsg(s->ctx)) : EXIT_OK;
}

/* The carried states of net become to's (the same model and B). */
static int copy_states(rnnc_net *net, rnnc_net *to)
{
  for (int i = 0; i < rnnc_tensor_count(net); i++) {
    const char *name = rnnc_tensor_name(net, i);
    int64_t dim[4];
    int rank;
    if (strncmp(name, "state.", 6) != 0)
      continue;
    if (rnnc_tensor_shape(net, name, NULL, &rank, dim) != RNNC_OK)
      return RNNC_EINPUT;
    size_t bytes = sizeof(float);
    for (int k = 0; k < rank; k++)
      bytes *= (size_t)dim[k];
    const void *from = rnnc_data(net, name);
    if (!from)
      return RNNC_EINPUT;
    int st = rnnc_set(to, name, from, bytes);
    if (st != RNNC_OK)
      return st;
  }
  return RNNC_OK;
}

int evaluate(const Session *s, rnnc_net *net, int whole, rnnc_net *tail, const Dataset *d, const char *what,
             int carry, long T, long B, int64_t maxb, const char *probsname, Score *sc)
{
  char err[1024];
  Batcher vb;
  memset(&vb, 0, sizeof vb);
  int st = whole && d->kind == DS_STREAM ? batcher_whole(&vb, d, (int)T, (int)B, err, sizeof err)
                                         : batcher_init(&vb, d, (int)T, (int)B, 0, 0, err, sizeof err);
  if (st != RNNC_OK)
    return user_error("%s: %s", what, err);
  if (vb.tail && !tail)
    die("evaluate: %s ends in a chunk of %d steps and no net for it", what, vb.tail);
  int64_t nb = vb.nbatch;
  if (maxb > 0 && maxb < nb)
    nb = maxb;
  double sum = 0, right = 0;
  int64_t n = 0;
  if (carry)
    rnnc_reset_state(net);
  const char *lossname = s->md->node[s->md->loss].name;
  const float *probs = probsname && (d->kind == DS_IDX || d->lab != LAB_NONE) ? rnnc_data(net, probsname) : NULL;
  int64_t pdim[4] = {0};
  int prank = 0;
  if (probs)
    rnnc_tensor_shape(net, probsname, NULL, &prank, pdim);
  int K = probs ? (int)pdim[prank - 1] : 0;
  for (int64_t k = 0; k < nb; k++) {
    const Batch *b = batcher_next(&vb);
    rnnc_net *run = b->T == T ? net : tail; /* the last, short chunk of a stream: its own net */
    if (carry && b->reset)
      st = rnnc_reset_state(run);
    else if (carry && run != net)
      st = copy_states(net, run);
    if (st != RNNC_OK || feed_batch(s, run, b) != RNNC_OK || rnnc_forward(run) != RNNC_OK) {
      batcher_free(&vb);
      return user_error("%s", rnnc_errmsg(s->ctx));
    }
    sum += (double)*(const float *)rnnc_data(run, lossname) * (double)b->ntarget;
    n += b->ntarget;
    /* labels [B] against probs [B, K]; tags [T, B] against probs [T, B, K] */
    int perrow = d->lab != LAB_TAG;
    const int32_t *want = perrow ? b->label : b->targets;
    int64_t nrow = perrow ? b->B : (int64_t)b->T * b->B;
    for (int64_t i = 0; probs && i < nrow; i++) {
      if (want[i] < 0)
        continue;
      int best = 0;
      for (int c = 1; c < K; c++)
        if (probs[i * K + c] > probs[i * K + best])
          best = c;
      right += best == want[i];
    }
  }
  batcher_free(&vb);
  sc->n = n;
  sc->loss = n ? sum / (double)n : 0;
  sc->acc = probs && n ? right / (double)n : -1;
  return EXIT_OK;
}

/* x with prec decimals, or in %g form when that would be too long (a
 * diverged run's perplexity has hundreds of digits). */
static const char *num(char *buf, size_t len, double x, int prec)
{
  snprintf(buf, len, fabs(x) < 1e9 ? "%.*f" : "%.*g", fabs(x) < 1e9 ? prec : 6, x);
  return buf;
}

void score_text(const Score *sc, int vocabkind, char *buf, size_t len)
{
  const char *unit = vocabkind == VOCAB_CHAR ? "character" : vocabkind == VOCAB_BYTE ? "byte" : NULL;
  char l[32], p[32], b[32], ppl[64] = "", bits[64] = "", acc[32] = "";
  if (vocabkind >= 0)
    snprintf(ppl, sizeof ppl, ", perplexity %s", num(p, sizeof p, exp(sc->loss), 3));
  if (unit)
    snprintf(bits, sizeof bits, ", %s bits per %s", num(b, sizeof b, sc->loss / log(2.0), 4), unit);
  if (sc->acc >= 0)
    snprintf(acc, sizeof acc, ", accuracy %.2f%%", 100 * sc->acc);
  snprintf(buf, len, "loss %s%s%s%s", num(l, sizeof l, sc->loss, 4), ppl, bits, acc);
}

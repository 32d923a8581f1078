/* cmd_train.c — `rnnc train MODEL.rnn --data PATH [...]`: train a model on
 * text (a language model: streams with truncated BPTT, or one sequence per
 * line with padding) or on IDX images (a classifier), with a compiled
 * training step (include/rnnc.h: rnnc_train_step), validation, a metrics
 * file, checkpoints and exact resume. docs/cli.md and docs/training.md. */
#include <jansson.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const OptSpec spec[] = {
    {"--data", 1, 0},        {"--valid", 1, 0},       {"--valid-frac", 1, 0}, {"--labels", 1, 0},
    {"--valid-labels", 1, 0}, {"--level", 1, 0},      {"--min-count", 1, 0},  {"--lines", 0, 0},
    {"--batch", 1, 0},       {"--seq", 1, 0},         {"--steps", 1, 0},      {"--epochs", 1, 0},
    {"--time", 1, 0},        {"--optim", 1, 0},       {"--lr", 1, 0},         {"--momentum", 1, 0},
    {"--beta1", 1, 0},       {"--beta2", 1, 0},       {"--eps", 1, 0},        {"--weight-decay", 1, 0},
    {"--clip-norm", 1, 0},   {"--clip-value", 1, 0},  {"--schedule", 1, 0},   {"--step-size", 1, 0},
    {"--gamma", 1, 0},       {"--warmup", 1, 0},      {"--min-lr", 1, 0},     {"--eval-every", 1, 0},
    {"--valid-batches", 1, 0}, {"--log-every", 1, 0}, {"--checkpoint", 1, 0}, {"--save-every", 1, 0},
    {"--resume", 1, 0},      {"--init", 1, 0},        {"--vectors", 1, 0},    {"--freeze", 1, 1},
    {"--metrics", 1, 0},     {"--seed", 1, 0},        {"--no-shuffle", 0, 0}, {"--threads", 1, 0},
    {"--dim", 1, 1},         {"--model", 1, 0},       {"--quiet", 0, 0},      {"--tagged", 0, 0},
};

static void help(void)
{
  fputs("usage: rnnc train MODEL.rnn --data PATH [options]\n"
        "\n"
        "Train the model with a compiled training step (forward, backward through\n"
        "time, clipping, the optimizer's update). A language model (token ids and\n"
        "targets) trains on text: one stream cut into --batch parallel parts with the\n"
        "state carried from chunk to chunk (truncated BPTT), or with --lines one\n"
        "sequence per line, padded. A classifier (features and labels) trains on IDX\n"
        "files (--data IMAGES --labels LABELS, e.g. Fashion-MNIST row by row). A text\n"
        "classifier (token ids and labels [B]) trains on LABEL<TAB>TEXT lines, a tagger\n"
        "(token ids and tags [T, B], --tagged) on TOKEN<TAB>TAG lines with a blank line\n"
        "between sentences; the classes are saved in the checkpoint.\n"
        "\n"
        "data:\n"
        "  --data PATH          training text (plain or gzip), or IDX images\n"
        "  --valid PATH         validation text (or IDX images); default: the last\n"
        "                       --valid-frac of the training data\n"
        "  --valid-frac F       fraction held out for validation (default 0.05)\n"
        "  --labels PATH        IDX labels of --data;  --valid-labels PATH of --valid\n"
        "  --level L            char (default: UTF-8 characters), byte or word\n"
        "  --min-count N        word level: words seen fewer times are <unk> (default 1)\n"
        "  --lines              one sequence per line (reset per batch, padded)\n"
        "  --tagged             TOKEN<TAB>TAG lines for a tagger (word level)\n"
        "  --batch B            rows per batch (default 32)\n"
        "  --seq T              steps per batch (default 64; IDX: the image's rows;\n"
        "                       labelled lines: the longest line)\n"
        "  --no-shuffle         keep the data's order (default: shuffled per epoch, seeded)\n"
        "length (default one epoch):\n"
        "  --steps N            stop after step N (counted from the start, resumes included)\n"
        "  --epochs N           stop after N epochs\n"
        "  --time S             stop after S seconds of training\n"
        "optimizer:\n"
        "  --optim O            sgd, adam (default) or adamw\n"
        "  --lr X               learning rate (default: sgd 0.1, adam/adamw 0.001)\n"
        "  --momentum X         sgd (default 0)\n"
        "  --beta1 X, --beta2 X, --eps X   adam/adamw (0.9, 0.999, 1e-8)\n"
        "  --weight-decay X     (default 0; adamw 0.01, decoupled)\n"
        "  --clip-norm X        clip the gradients' global norm (default 5; 0: off)\n"
        "  --clip-value X       clamp each gradient to [-X, X] first (default off)\n"
        "  --schedule S         constant (default), step (--step-size N --gamma X) or\n"
        "                       cosine (--warmup N, --min-lr X, down to --steps)\n"
        "runs:\n"
        "  --eval-every N       validate every N steps (default 500, and at the end)\n"
        "  --valid-batches N    validate on at most N batches (default: all)\n"
        "  --log-every N        a log line every N steps when stdout is not a terminal\n"
        "                       (default 100)\n"
        "  --checkpoint PATH    save a checkpoint here at each validation and at the end\n"
        "  --save-every N       ... and every N steps\n"
        "  --resume PATH        continue from a checkpoint exactly where it stopped\n"
        "  --init PARAMS        start from these parameters (safetensors)\n"
        "  --vectors PATH       word level: pretrained vectors (GloVe / word2vec text or\n"
        "                       binary) into the embedding;  --freeze NAME keeps a\n"
        "                       parameter (e.g. x.weight) as it is; repeatable\n"
        "  --metrics PATH       one JSON object per log line and validation (JSON lines)\n"
        "  --seed N             initialization and shuffling (default 1)\n"
        "  --threads N          threads (default: OMP_NUM_THREADS or every core)\n"
        "  --dim NAME=N         bind a model dimension; repeatable\n"
        "  --model NAME         the model to train when the file has several\n"
        "  --quiet              print only errors and the final summary\n"
        "\n"
        "exit status: 0 trained, 1 an error (bad data, a loss that is not finite), 2 bad usage\n",
        stdout);
}

/* Everything a run holds. */
typedef struct Run {
  Opts o;
  Session s;
  TextData td;           /* text data */
  Dataset train, valid;  /* IDX data (moved from td for text: td.train, td.valid) */
  const Dataset *tr, *va;
  int idx, lines, carry;
  int lab;               /* labelled lines: LAB_CLASS, LAB_TAG; else LAB_NONE */
  char *classjson;       /* their classes (rnnc.classes) */
  long T, B;
  rnnc_dim dims[40]; int ndims;
  rnnc_net *net, *vnet;
  rnnc_optim *opt;
  Batcher bt;
  TensorSet ck;          /* the resumed checkpoint's metadata */
  FILE *metrics;
  Progress pr;
  char *vocabjson, *config;
  const char *ckpath;
  long lastsaved;        /* step of the last checkpoint written, -1 */
  int nth;               /* --threads, 0: OpenMP's default */
  const char *probsname; /* an output with the loss softmax's probabilities, or NULL */
} Run;

static void run_free(Run *r)
{
  batcher_free(&r->bt);
  rnnc_optim_free(r->opt);
  rnnc_net_free(r->vnet);
  rnnc_net_free(r->net);
  for (int i = 0; i < r->ndims; i++)
    free((char *)r->dims[i].name);
  textdata_free(&r->td);
  dataset_free(&r->train);
  dataset_free(&r->valid);
  tset_clear(&r->ck);
  if (r->metrics)
    fclose(r->metrics);
  free(r->vocabjson);
  free(r->classjson);
  free(r->config);
  session_close(&r->s);
}

/* Print the API's last message as a user error. */
static int api_error(Run *r)
{
  return user_error("%s", rnnc_errmsg(r->s.ctx));
}

/* ---- data -------------------------------------------------------------------- */

static int load_data(Run *r)
{
  char err[1024];
  Opts *o = &r->o;
  if (opts_require(o, "--data"))
    return EXIT_USAGE;
  if (r->s.features && r->s.labels) {
    r->idx = 1;
    if (opts_require(o, "--labels"))
      return EXIT_USAGE;
    if (dataset_idx(&r->train, opt_str(o, "--data"), opt_str(o, "--labels"), err, sizeof err) != RNNC_OK)
      return user_error("%s", err);
    if (opt_given(o, "--valid")) {
      if (opts_require(o, "--valid-labels"))
        return EXIT_USAGE;
      if (dataset_idx(&r->valid, opt_str(o, "--valid"), opt_str(o, "--valid-labels"), err, sizeof err) != RNNC_OK)
        return user_error("%s", err);
    }
    r->tr = &r->train;
    r->va = opt_given(o, "--valid") ? &r->valid : NULL;
    return EXIT_OK;
  }
  r->lab = r->s.tokens && r->s.labels && !r->s.features ? LAB_CLASS
           : r->s.tokens && r->s.targets && opt_given(o, "--tagged") ? LAB_TAG
                                                                     : LAB_NONE;
  if (opt_given(o, "--tagged") && r->lab != LAB_TAG)
    return user_error("--tagged: model '%s' has no token ids with targets [T, B] to tag", r->s.md->name);
  if (!r->lab && (!r->s.tokens || !r->s.targets))
    return user_error("model '%s' has neither token ids with targets (a language model) nor features with "
                      "labels (a classifier): rnnc train does not know what to feed it",
                      r->s.md->name);
  double frac;
  uint64_t seed;
  if (opt_double(o, "--valid-frac", opt_given(o, "--valid") ? 0 : 0.05, 0, &frac) || opt_u64(o, "--seed", 1, &seed))
    return EXIT_USAGE;
  if (frac >= 1)
    return usage_error(o->cmd, "--valid-frac wants a fraction below 1, not %g", frac);
  int st = r->lab ? labeldata_load(o, tset_getmeta(&r->ck, "rnnc.vocab"), tset_getmeta(&r->ck, "rnnc.classes"),
                                   r->lab, frac, seed, &r->td)
                  : textdata_load(o, tset_getmeta(&r->ck, "rnnc.vocab"), r->lines, frac, seed, &r->td);
  if (st)
    return st;
  r->tr = &r->td.train;
  r->va = r->td.hasvalid ? &r->td.valid : NULL;
  return EXIT_OK;
}

/* ---- checkpoints and metrics -------------------------------------------------- */

static int save(Run *r, long step)
{
  if (!r->ckpath || r->lastsaved == step)
    return EXIT_OK;
  char pos[64], seed[32];
  batcher_tell(&r->bt, pos, sizeof pos);
  snprintf(seed, sizeof seed, "%s", opt_str(&r->o, "--seed") ? opt_str(&r->o, "--seed") : "1");
  const char *kv[] = {"rnnc.data", pos, "rnnc.seed", seed, "rnnc.config", r->config,
                      "rnnc.vocab", r->vocabjson ? r->vocabjson : "", "rnnc.classes", r->classjson};
  int nkv = r->vocabjson ? r->classjson ? 5 : 4 : 3;
  if (rnnc_checkpoint_save(r->opt, r->ckpath, nkv, kv) != RNNC_OK)
    return api_error(r);
  r->lastsaved = step;
  return EXIT_OK;
}

/* One JSON line into the metrics file; obj is consumed. */
static void metric(Run *r, json_t *obj)
{
  if (r->metrics && obj) {
    json_dumpf(obj, r->metrics, JSON_COMPACT | JSON_REAL_PRECISION(8));
    fputc('\n', r->metrics);
    fflush(r->metrics);
  }
  json_decref(obj);
}

/* The training options as a JSON object (for the checkpoint). */
static char *config_json(const Opts *o, int argc, char **argv)
{
  (void)o;
  json_t *a = json_array();
  for (int i = 1; i < argc; i++)
    json_array_append_new(a, json_string(argv[i]));
  json_t *obj = json_pack("{s:o}", "argv", a);
  char *s = json_dumps(obj, JSON_COMPACT);
  json_decref(obj);
  return s;
}

static int do_validate(Run *r, long step, int64_t epoch, Score *sc)
{
  uint64_t maxb;
  if (opt_u64(&r->o, "--valid-batches", 0, &maxb))
    return EXIT_USAGE;
  int st = evaluate(&r->s, r->vnet, 0, NULL, r->va, "validation data", r->carry, r->T, r->B, (int64_t)maxb, r->probsname, sc);
  if (st)
    return st;
  char d[200];
  score_text(sc, r->idx || r->lab ? -1 : r->td.vocab.kind, d, sizeof d);
  progress_line(&r->pr, "step %ld  validation: %s", step, d);
  json_t *m = json_pack("{s:I,s:I,s:f,s:f}", "step", (json_int_t)step, "epoch", (json_int_t)epoch, "valid_loss",
                        sc->loss, "valid_ppl", exp(sc->loss));
  if (!r->idx && !r->lab && r->td.vocab.kind != VOCAB_WORD)
    json_object_set_new(m, "valid_bpc", json_real(sc->loss / log(2.0)));
  if (sc->acc >= 0)
    json_object_set_new(m, "valid_accuracy", json_real(sc->acc));
  metric(r, m);
  return EXIT_OK;
}

/* ---- the command ----------------------------------------------------------------- */

/* The optimizer configuration from the options. */
static int optconfig(const Opts *o, rnnc_optim_config *c, uint64_t steps)
{
  const char *name = opt_str(o, "--optim");
  int kind = !name || strcmp(name, "adam") == 0 ? RNNC_ADAM
             : strcmp(name, "sgd") == 0         ? RNNC_SGD
             : strcmp(name, "adamw") == 0       ? RNNC_ADAMW
                                                : -1;
  if (kind < 0)
    return usage_error(o->cmd, "--optim wants sgd, adam or adamw, not '%s'", name);
  rnnc_optim_defaults(c, kind);
  uint64_t stepsize, warmup;
  if (opt_double(o, "--lr", c->lr, 0, &c->lr) || opt_double(o, "--momentum", 0, 0, &c->momentum) ||
      opt_double(o, "--beta1", c->beta1, 0, &c->beta1) || opt_double(o, "--beta2", c->beta2, 0, &c->beta2) ||
      opt_double(o, "--eps", c->eps, 0, &c->eps) ||
      opt_double(o, "--weight-decay", c->weight_decay, 0, &c->weight_decay) ||
      opt_double(o, "--clip-norm", 5, 0, &c->clip_norm) || opt_double(o, "--clip-value", 0, 0, &c->clip_value) ||
      opt_double(o, "--gamma", 0.1, 0, &c->gamma) || opt_double(o, "--min-lr", 0, 0, &c->min_lr) ||
      opt_u64(o, "--step-size", 1000, &stepsize) || opt_u64(o, "--warmup", 0, &warmup))
    return EXIT_USAGE;
  c->step_size = (long)stepsize;
  c->warmup = (long)warmup;
  c->total = (long)steps;
  const char *sch = opt_str(o, "--schedule");
  if (!sch || strcmp(sch, "constant") == 0)
    c->schedule = RNNC_LR_CONSTANT;
  else if (strcmp(sch, "step") == 0)
    c->schedule = RNNC_LR_STEP;
  else if (strcmp(sch, "cosine") == 0)
    c->schedule = RNNC_LR_COSINE;
  else
    return usage_error(o->cmd, "--schedule wants constant, step or cosine, not '%s'", sch);
  if (c->schedule == RNNC_LR_COSINE && !steps)
    return usage_error(o->cmd, "--schedule cosine needs --steps (the step it ends at)");
  return EXIT_OK;
}

/* Open, load, compile: everything before the first step. */
static int setup(Run *r, int argc, char **argv)
{
  Opts *o = &r->o;
  int st;
  if ((st = session_open(&r->s, o->pos[0], opt_str(o, "--model"))))
    return st;
  r->lines = opt_given(o, "--lines");
  if (opt_given(o, "--resume")) {
    char err[1024];
    if (safetensors_read(opt_str(o, "--resume"), &r->ck, err, sizeof err) != RNNC_OK)
      return user_error("%s", err);
    if (!tset_getmeta(&r->ck, "rnnc.data"))
      return user_error("'%s' is not a training checkpoint (no rnnc.data)", opt_str(o, "--resume"));
  }
  if ((st = load_data(r)))
    return st;
  uint64_t T, B;
  if (r->lab)
    r->lines = 1;
  uint64_t T0 = r->idx ? (uint64_t)r->tr->steps : r->lab ? (uint64_t)textdata_longest(&r->td) : 64;
  if (opt_u64(o, "--seq", T0, &T) || opt_u64(o, "--batch", 32, &B))
    return EXIT_USAGE;
  if (T < 1 || B < 1)
    return usage_error(o->cmd, "--%s must be at least 1", T < 1 ? "seq" : "batch");
  if (r->idx && (long)T != r->tr->steps)
    return usage_error(o->cmd, "--seq must be the images' %d rows for IDX data", r->tr->steps);
  r->T = (long)T;
  r->B = (long)B;
  if ((r->lines || r->idx) && !r->s.ignore)
    return user_error("model '%s': padded batches (%s) need `ignore = -1` on its softmax", r->s.md->name,
                      r->idx ? "IDX data" : r->lab ? "labelled lines" : "--lines");
  if (r->lab && !r->s.mask && !opt_given(o, "--quiet"))
    fprintf(stderr, "rnnc: note: model '%s' has no mask (an f32[T, B] input given as a cell's `mask = m`): the "
                    "padding after shorter lines runs through its cells\n",
            r->s.md->name);
  r->carry = !r->idx && !r->lines && !r->s.backward;
  long V = r->idx ? 0 : r->td.vocab.n;
  r->s.nclass = r->lab ? r->td.classes.n : 0;
  if ((st = session_dims(&r->s, o, V, r->T, r->B, r->dims, 40, &r->ndims)))
    return st;
  int nth;
  if ((st = opt_threads(o, &nth)))
    return st;
  r->nth = nth;
  const char *mname = r->s.md->name;
  if (rnnc_compile(r->s.ctx, mname, r->ndims, r->dims, RNNC_GRAD | (r->carry ? RNNC_CARRY : 0), &r->net) ||
      rnnc_set_threads(r->net, nth))
    return api_error(r);
  if (r->va && (rnnc_compile(r->s.ctx, mname, r->ndims, r->dims, r->carry ? RNNC_CARRY : 0, &r->vnet) ||
                rnnc_share_params(r->vnet, r->net) || rnnc_set_threads(r->vnet, nth)))
    return api_error(r);
  const Model *md = r->s.md;
  r->probsname = r->s.probs;

  uint64_t seed;
  if (opt_u64(o, "--seed", 1, &seed))
    return EXIT_USAGE;
  if ((opt_given(o, "--init") ? rnnc_load_params(r->net, opt_str(o, "--init")) : rnnc_init_params(r->net, seed)))
    return api_error(r);
  if (opt_given(o, "--vectors")) {
    if (r->idx || r->td.vocab.kind != VOCAB_WORD)
      return usage_error(o->cmd, "--vectors needs word-level text (--level word)");
    const MNode *emb = NULL;
    for (int i = 0; i < md->nnode && !emb; i++)
      if (md->node[i].kind == M_EMBEDDING)
        emb = &md->node[i];
    if (!emb)
      return user_error("--vectors: model '%s' has no embedding", md->name);
    char wname[300], err[1024];
    snprintf(wname, sizeof wname, "%s.weight", emb->name);
    int64_t dim[4], missing = 0;
    rnnc_tensor_shape(r->net, wname, NULL, NULL, dim);
    if (wordvec_load(opt_str(o, "--vectors"), &r->td.vocab, rnnc_data(r->net, wname), dim[0], dim[1], &missing,
                     err, sizeof err) != RNNC_OK)
      return user_error("%s", err);
    if (!opt_given(o, "--quiet"))
      printf("vectors: %lld of %lld words found in '%s'; %lld keep their random initialization\n",
             (long long)(dim[0] - missing), (long long)dim[0], opt_str(o, "--vectors"), (long long)missing);
  }
  uint64_t steps;
  if (opt_u64(o, "--steps", 0, &steps))
    return EXIT_USAGE;
  rnnc_optim_config c;
  if ((st = optconfig(o, &c, steps)))
    return st;
  int kf = 0;
  for (int i = 0; i < o->nspec; i++)
    if (strcmp(o->spec[i].name, "--freeze") == 0)
      kf = i;
  if (rnnc_optim_new(r->net, &c, o->count[kf], o->val[kf], &r->opt))
    return api_error(r);

  char err[1024];
  if (batcher_init(&r->bt, r->tr, (int)r->T, (int)r->B, !opt_given(o, "--no-shuffle"), seed, err, sizeof err))
    return user_error("training data: %s", err);
  if (opt_given(o, "--resume")) {
    if (rnnc_checkpoint_load(r->opt, opt_str(o, "--resume")))
      return api_error(r);
    if (batcher_seek(&r->bt, tset_getmeta(&r->ck, "rnnc.data"), err, sizeof err))
      return user_error("%s: %s", opt_str(o, "--resume"), err);
  }
  r->vocabjson = r->idx ? NULL : vocab_to_json(&r->td.vocab);
  r->classjson = r->lab ? classes_to_json(&r->td.classes) : NULL;
  r->config = config_json(o, argc, argv);
  r->ckpath = opt_str(o, "--checkpoint");
  r->lastsaved = -1;
  if (opt_given(o, "--metrics") && !(r->metrics = fopen(opt_str(o, "--metrics"), "a")))
    return user_error("cannot open '%s' for writing", opt_str(o, "--metrics"));
  return EXIT_OK;
}

int cmd_train(int argc, char **argv)
{
  Run *r = calloc(1, sizeof *r);
  if (!r)
    return user_error("out of memory");
  tset_init(&r->ck);
  Opts *o = &r->o;
  int st = opts_parse(o, "train", spec, (int)(sizeof spec / sizeof spec[0]), argc, argv);
  if (st || o->help) {
    if (!st)
      help();
    free(r);
    return st;
  }
  const char *path;
  if ((st = opts_model_path(o, &path)) || (st = setup(r, argc, argv))) {
    run_free(r);
    free(r);
    return st;
  }
  uint64_t maxsteps, maxepochs, evalevery, saveevery, logevery;
  double maxtime;
  if (opt_u64(o, "--steps", 0, &maxsteps) || opt_u64(o, "--epochs", 0, &maxepochs) ||
      opt_double(o, "--time", 0, 0, &maxtime) || opt_u64(o, "--eval-every", 500, &evalevery) ||
      opt_u64(o, "--save-every", 0, &saveevery) || opt_u64(o, "--log-every", 100, &logevery)) {
    run_free(r);
    free(r);
    return EXIT_USAGE;
  }
  if (!maxsteps && !maxepochs && maxtime <= 0)
    maxepochs = (uint64_t)r->bt.epoch + 1;
  int quiet = opt_given(o, "--quiet");
  progress_init(&r->pr, stdout, quiet, (int64_t)logevery);
  long step = rnnc_optim_steps(r->opt);
  if (!quiet)
    printf("training %s on %s: %lld %s per epoch (B = %ld, T = %ld)%s, %d threads\n", r->s.md->name,
           opt_str(o, "--data"), (long long)r->bt.nbatch, "batches", r->B, r->T,
           step ? ", resumed" : "", r->nth ? r->nth : omp_get_max_threads());
  double t0 = now_s(), tw = t0, elapsed = 0;
  int64_t wtok = 0;
  double tokps = 0, lastloss = NAN;
  Score sc = {.loss = NAN, .acc = -1};
  long valstep = -1;    /* the step last validated */
  st = EXIT_OK;
  for (;;) {
    if ((maxsteps && (uint64_t)step >= maxsteps) || (maxtime > 0 && elapsed >= maxtime))
      break;
    if (maxepochs && (uint64_t)(r->bt.epoch + (r->bt.pos >= r->bt.nbatch)) >= maxepochs)
      break;
    const Batch *b = batcher_next(&r->bt);
    if (r->carry && b->reset)
      rnnc_reset_state(r->net);
    float loss;
    double gnorm;
    if (feed_batch(&r->s, r->net, b) != RNNC_OK) {
      st = api_error(r);
      break;
    }
    double lr = rnnc_optim_lr(r->opt);
    if (rnnc_train_step(r->opt, &loss, &gnorm) != RNNC_OK) {
      progress_done(&r->pr);
      if (r->lastsaved >= 0)
        st = user_error("%s; stopped. The last good checkpoint is '%s' (step %ld)", rnnc_errmsg(r->s.ctx),
                        r->ckpath, r->lastsaved);
      else
        st = user_error("%s; stopped (no checkpoint was saved)", rnnc_errmsg(r->s.ctx));
      break;
    }
    step++;
    lastloss = loss;
    wtok += b->ntarget;
    double t = now_s();
    elapsed = t - t0;
    if (t - tw >= 1.0 || tokps == 0) {
      tokps = (double)wtok / (t - tw);
      tw = t;
      wtok = 0;
    }
    double frac = maxsteps ? (double)step / (double)maxsteps
                  : maxtime > 0 ? elapsed / maxtime
                  : maxepochs ? ((double)r->bt.epoch + (double)r->bt.pos / (double)r->bt.nbatch) / (double)maxepochs
                              : 0;
    progress_step(&r->pr, &(ProgressInfo){.step = step, .epoch = r->bt.epoch + 1, .loss = loss, .lr = lr,
                                          .tokps = tokps, .elapsed = elapsed, .frac = frac,
                                          .unit = r->idx || r->lab == LAB_CLASS ? "examples/s" : "tok/s"});
    if (step % (long)r->pr.logevery == 0)
      metric(r, json_pack("{s:I,s:I,s:f,s:f,s:f,s:f,s:f}", "step", (json_int_t)step, "epoch",
                          (json_int_t)(r->bt.epoch + 1), "loss", (double)loss, "lr", lr, "grad_norm", gnorm,
                          "tokens_per_s", tokps, "time_s", elapsed));
    if (r->va && evalevery && step % (long)evalevery == 0) {
      if ((st = do_validate(r, step, r->bt.epoch + 1, &sc)) || (st = save(r, step)))
        break;
      valstep = step;
    }
    if (saveevery && step % (long)saveevery == 0 && (st = save(r, step)))
      break;
  }
  progress_done(&r->pr);
  if (st == EXIT_OK && r->va && valstep != step && (st = do_validate(r, step, r->bt.epoch + 1, &sc)) == EXIT_OK)
    valstep = step;
  if (st == EXIT_OK)
    st = save(r, step);
  if (st == EXIT_OK) {
    double secs = now_s() - t0;
    printf("trained %ld steps in %.1f s; last training loss %.4f\n", step, secs, (double)lastloss);
    if (valstep >= 0) {
      char d[200];
      score_text(&sc, r->idx || r->lab ? -1 : r->td.vocab.kind, d, sizeof d);
      printf("validation (%lld targets): %s\n", (long long)sc.n, d);
    }
    if (r->ckpath)
      printf("checkpoint: %s (step %ld)\n", r->ckpath, step);
  }
  run_free(r);
  free(r);
  return st;
}

/* cmd_eval.c — `rnnc eval MODEL.rnn --params P --data PATH`: the mean
 * cross-entropy, perplexity and bits per character of a language model on a
 * text (the vocabulary from the checkpoint rnnc train wrote), a classifier's
 * loss and accuracy on IDX files, and the log-probability of given sentences
 * (--sentence), each the product of its conditionals. */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const OptSpec spec[] = {
    {"--params", 1, 0}, {"--data", 1, 0},     {"--labels", 1, 0}, {"--level", 1, 0}, {"--lines", 0, 0},
    {"--batch", 1, 0},  {"--seq", 1, 0},      {"--sentence", 1, 1}, {"--threads", 1, 0}, {"--dim", 1, 1},
    {"--model", 1, 0},  {"--min-count", 1, 0}, {"--valid", 1, 0}, {"--tagged", 0, 0},
    {"--json", 0, 0},
};

static void help(void)
{
  fputs("usage: rnnc eval MODEL.rnn --params CKPT (--data PATH | --sentence TEXT ...) [options]\n"
        "\n"
        "Evaluate trained parameters (a checkpoint of rnnc train, which holds the\n"
        "vocabulary). On text: the mean cross-entropy per token, the perplexity and,\n"
        "at character or byte level, bits per character, over --data read as one\n"
        "stream cut into --batch parts with the state carried through it. On IDX data\n"
        "(--data IMAGES --labels LABELS): a classifier's loss and, when the model\n"
        "outputs probs() of its softmax, its accuracy; the same for a text classifier\n"
        "on LABEL<TAB>TEXT lines and a tagger on TOKEN<TAB>TAG lines (per token), with\n"
        "the classes of the checkpoint. --sentence: the\n"
        "log-probability of each sentence after its first token.\n"
        "\n"
        "options:\n"
        "  --params CKPT     the parameters (required)\n"
        "  --data PATH       text (plain or gzip) or IDX images\n"
        "  --labels PATH     IDX labels\n"
        "  --sentence TEXT   score this sentence; repeatable\n"
        "  --level L         char, byte or word, when the parameters hold no vocabulary\n"
        "                    (byte needs none)\n"
        "  --lines           one sequence per line (reset per batch)\n"
        "  --tagged          TOKEN<TAB>TAG lines (implied by a tagger's checkpoint)\n"
        "  --batch B         rows per batch (default 32)\n"
        "  --seq T           steps per batch (default 64; labelled lines: the longest)\n"
        "  --json            print the --data result as one JSON object, full precision\n"
        "                    ({\"data\", \"n\", \"loss\"[, \"accuracy\"]})\n"
        "  --threads N       threads (default: OMP_NUM_THREADS or every core)\n"
        "  --dim NAME=N      bind a model dimension; repeatable\n"
        "  --model NAME      the model when the file has several\n"
        "\n"
        "exit status: 0 evaluated, 1 an error in the model, the parameters or the data, 2 bad usage\n",
        stdout);
}

/* The vocabulary: the checkpoint's, or byte level when it has none. */
static int vocab_of(const Opts *o, const TensorSet *ck, char **json)
{
  const char *v = tset_getmeta(ck, "rnnc.vocab");
  const char *lv = opt_str(o, "--level");
  if (v) {
    *json = strdup(v);
  } else if (lv && strcmp(lv, "byte") == 0) {
    *json = strdup("{\"kind\": \"byte\"}");
  } else {
    return user_error("'%s' holds no vocabulary (rnnc.vocab): evaluate a checkpoint written by rnnc train, "
                      "or give --level byte",
                      opt_str(o, "--params"));
  }
  return *json ? EXIT_OK : user_error("out of memory");
}

/* Log-probabilities of the --sentence texts. */
static int sentences(Session *s, const Opts *o, const Vocab *v, const rnnc_dim *dims, int ndims, int nth)
{
  int k = 0;
  for (int i = 0; i < o->nspec; i++)
    if (strcmp(o->spec[i].name, "--sentence") == 0)
      k = i;
  rnnc_generator *g;
  if (rnnc_generator_new(s->ctx, s->md->name, ndims, dims, 1, &g) ||
      rnnc_generator_load_params(g, opt_str(o, "--params")) || rnnc_generator_threads(g, nth))
    return user_error("%s", rnnc_errmsg(s->ctx));
  int st = EXIT_OK;
  for (int i = 0; st == EXIT_OK && i < o->count[k]; i++) {
    const char *text = o->val[k][i];
    char err[1024];
    int32_t *ids = NULL;
    size_t n = 0;
    double lp;
    if (vocab_encode(v, "--sentence", text, strlen(text), &ids, &n, NULL, err, sizeof err) != RNNC_OK)
      st = user_error("%s", err);
    else if (n < 2)
      st = user_error("--sentence '%s' has %zu token; it needs 2 or more (the first is given)", text, n);
    else if (rnnc_log_prob(g, ids, (int)n, &lp) != RNNC_OK)
      st = user_error("%s", rnnc_errmsg(s->ctx));
    else
      printf("sentence \"%s\": log p = %.4f (%.4f bits, %.4f per token after the first, %zu tokens)\n", text, lp,
             lp / log(2.0), lp / (double)(n - 1), n);
    free(ids);
  }
  rnnc_generator_free(g);
  return st;
}

int cmd_eval(int argc, char **argv)
{
  Opts o;
  int st = opts_parse(&o, "eval", spec, (int)(sizeof spec / sizeof spec[0]), argc, argv);
  if (st || o.help) {
    if (!st)
      help();
    return st;
  }
  const char *path;
  if ((st = opts_model_path(&o, &path)) || opts_require(&o, "--params"))
    return st ? st : EXIT_USAGE;
  if (!opt_given(&o, "--data") && !opt_given(&o, "--sentence"))
    return usage_error("eval", "give --data PATH or --sentence TEXT");
  if (opt_given(&o, "--valid"))
    return usage_error("eval", "give the data to evaluate with --data");
  uint64_t T, B;
  int nth;
  if (opt_u64(&o, "--seq", 64, &T) || opt_u64(&o, "--batch", 32, &B) || (st = opt_threads(&o, &nth)))
    return st ? st : EXIT_USAGE;
  if (T < 1 || B < 1)
    return usage_error("eval", "--%s must be at least 1", T < 1 ? "seq" : "batch");

  Session s;
  TextData td = {0};
  Dataset idx = {0};
  TensorSet ck;
  tset_init(&ck);
  rnnc_dim dims[40];
  int ndims = 0;
  char *vjson = NULL;
  rnnc_net *net = NULL, *tail = NULL;
  char err[1024];
  if ((st = session_open(&s, path, opt_str(&o, "--model"))))
    goto done;
  if (safetensors_read(opt_str(&o, "--params"), &ck, err, sizeof err) != RNNC_OK) {
    st = user_error("%s", err);
    goto done;
  }
  int isidx = s.features && s.labels;
  int lab = s.tokens && s.labels && !s.features ? LAB_CLASS
            : s.tokens && s.targets && (opt_given(&o, "--tagged") || tset_getmeta(&ck, "rnnc.classes")) ? LAB_TAG
                                                                                                        : LAB_NONE;
  if (lab) {
    const char *cj = tset_getmeta(&ck, "rnnc.classes");
    if (!opt_given(&o, "--data")) {
      st = usage_error("eval", "a %s needs --data", lab == LAB_CLASS ? "text classifier" : "tagger");
      goto done;
    }
    if (!cj) {
      st = user_error("'%s' holds no classes (rnnc.classes): evaluate a checkpoint that rnnc train wrote on "
                      "labelled lines",
                      opt_str(&o, "--params"));
      goto done;
    }
    if ((st = vocab_of(&o, &ck, &vjson)) || (st = labeldata_load(&o, vjson, cj, lab, 0, 0, &td)))
      goto done;
    if (!opt_given(&o, "--seq"))
      T = (uint64_t)textdata_longest(&td);
    s.nclass = td.classes.n;
  } else if (isidx) {
    if (!opt_given(&o, "--data") || opts_require(&o, "--labels")) {
      st = opt_given(&o, "--data") ? EXIT_USAGE : usage_error("eval", "a classifier needs --data and --labels");
      goto done;
    }
    if (dataset_idx(&idx, opt_str(&o, "--data"), opt_str(&o, "--labels"), err, sizeof err) != RNNC_OK) {
      st = user_error("%s", err);
      goto done;
    }
    T = (uint64_t)idx.steps;
  } else if (!s.tokens || !s.targets) {
    st = user_error("model '%s' has neither token ids with targets nor features with labels", s.md->name);
    goto done;
  } else {
    if ((st = vocab_of(&o, &ck, &vjson)))
      goto done;
    if (opt_given(&o, "--data")) {
      if ((st = textdata_load(&o, vjson, opt_given(&o, "--lines"), 0, 0, &td)))
        goto done;
    } else if (vocab_from_json(&td.vocab, vjson, err, sizeof err) != RNNC_OK) {
      st = user_error("%s: %s", opt_str(&o, "--params"), err);
      goto done;
    }
  }
  if ((st = session_dims(&s, &o, isidx ? 0 : td.vocab.n, 0, 0, dims, 38, &ndims)))
    goto done;
  if (opt_given(&o, "--data")) {
    int carry = !isidx && !lab && !opt_given(&o, "--lines") && !s.backward;
    dims[ndims] = (rnnc_dim){"T", (long)T};
    dims[ndims + 1] = (rnnc_dim){"B", (long)B};
    Score sc;
    if (rnnc_compile(s.ctx, s.md->name, ndims + 2, dims, carry ? RNNC_CARRY : 0, &net) ||
        rnnc_set_threads(net, nth) || rnnc_load_params(net, opt_str(&o, "--params"))) {
      st = user_error("%s", rnnc_errmsg(s.ctx));
      goto done;
    }
    const Dataset *d = isidx ? &idx : &td.train;
    if ((st = eval_tail_net(&s, net, d, ndims + 2, dims, (long)T, (long)B, carry ? RNNC_CARRY : 0, nth, &tail)) ||
        (st = evaluate(&s, net, 1, tail, d, opt_str(&o, "--data"), carry, (long)T, (long)B, 0, s.probs, &sc)))
      goto done;
    if (opt_given(&o, "--json")) {
      json_t *j = json_pack("{s:s,s:I,s:f}", "data", opt_str(&o, "--data"), "n", (json_int_t)sc.n, "loss", sc.loss);
      if (sc.acc >= 0)
        json_object_set_new(j, "accuracy", json_real(sc.acc));
      json_dumpf(j, stdout, JSON_COMPACT | JSON_REAL_PRECISION(17));
      fputc('\n', stdout);
      json_decref(j);
      goto sentences;
    }
    char line[200];
    score_text(&sc, isidx || lab ? -1 : td.vocab.kind, line, sizeof line);
    printf("%s: %lld %s, %s\n", opt_str(&o, "--data"), (long long)sc.n,
           isidx || lab == LAB_CLASS ? "examples" : "targets", line);
  }
sentences:
  if (opt_given(&o, "--sentence")) {
    if (isidx || lab) {
      st = usage_error("eval", "--sentence needs a language model");
      goto done;
    }
    st = sentences(&s, &o, &td.vocab, dims, ndims, nth);
  }
done:
  rnnc_net_free(tail);
  rnnc_net_free(net);
  for (int i = 0; i < ndims; i++)
    free((char *)dims[i].name);
  free(vjson);
  textdata_free(&td);
  dataset_free(&idx);
  tset_clear(&ck);
  if (s.ctx)
    session_close(&s);
  return st;
}

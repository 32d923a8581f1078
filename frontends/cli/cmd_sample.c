/* cmd_sample.c — `rnnc sample MODEL.rnn --params CKPT [--prefix S]`: text
 * from a trained language model, one token at a time by its compiled
 * single-step kernels (include/rnnc.h: rnnc_generate, rnnc_beam_search):
 * greedy, temperature, top-k, or beam search. */
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const OptSpec spec[] = {
    {"--params", 1, 0}, {"--prefix", 1, 0}, {"--length", 1, 0},  {"--greedy", 0, 0},  {"--temperature", 1, 0},
    {"--top-k", 1, 0},  {"--beam", 1, 0},   {"--length-norm", 1, 0}, {"--end", 1, 0}, {"--seed", 1, 0}, {"--count", 1, 0},
    {"--threads", 1, 0}, {"--dim", 1, 1},   {"--model", 1, 0},
};

static void help(void)
{
  fputs("usage: rnnc sample MODEL.rnn --params CKPT [--prefix TEXT] [--length N]\n"
        "                   [--greedy | --temperature X [--top-k K] | --beam K [--length-norm A]]\n"
        "\n"
        "Generate text from a language model trained by rnnc train (CKPT holds its\n"
        "parameters and vocabulary). The prefix is fed first; then each token is\n"
        "chosen from the model's next-token probabilities. Prints the prefix and what\n"
        "follows it.\n"
        "\n"
        "options:\n"
        "  --params CKPT      the checkpoint (required)\n"
        "  --prefix TEXT      the start (default: the first token of the vocabulary)\n"
        "  --length N         tokens to generate (default 200)\n"
        "  --greedy           the most probable token every time\n"
        "  --temperature X    sample from p^(1/X), renormalized (default 1)\n"
        "  --top-k K          ... among the K most probable tokens only\n"
        "  --beam K           beam search of width K: the most probable continuation\n"
        "  --end TEXT         beam: a hypothesis ends at this token (one token; \\n is a\n"
        "                     newline), so hypotheses differ in length\n"
        "  --length-norm A    beam: divide scores by length^A (GNMT; default 0, none),\n"
        "                     which only matters with --end\n"
        "  --seed N           random draws (default 1)\n"
        "  --count N          this many samples (default 1), seeds N, N+1, ...\n"
        "  --threads N        threads (default: OMP_NUM_THREADS or every core)\n"
        "  --dim NAME=N       bind a model dimension; repeatable\n"
        "  --model NAME       the model when the file has several\n"
        "\n"
        "exit status: 0 generated, 1 an error in the model or the checkpoint, 2 bad usage\n",
        stdout);
}

int cmd_sample(int argc, char **argv)
{
  Opts o;
  int st = opts_parse(&o, "sample", spec, (int)(sizeof spec / sizeof spec[0]), argc, argv);
  if (st || o.help) {
    if (!st)
      help();
    return st;
  }
  const char *path;
  if ((st = opts_model_path(&o, &path)) || opts_require(&o, "--params"))
    return st ? st : EXIT_USAGE;
  uint64_t length, topk, beam, seed, count;
  double temp, lnorm;
  int nth;
  if (opt_u64(&o, "--length", 200, &length) || opt_u64(&o, "--top-k", 0, &topk) || opt_u64(&o, "--beam", 0, &beam) ||
      opt_u64(&o, "--seed", 1, &seed) || opt_u64(&o, "--count", 1, &count) ||
      opt_double(&o, "--temperature", 1, 0, &temp) || opt_double(&o, "--length-norm", 0, 0, &lnorm) ||
      (st = opt_threads(&o, &nth)))
    return st ? st : EXIT_USAGE;
  int modes = opt_given(&o, "--greedy") + opt_given(&o, "--beam") + opt_given(&o, "--temperature");
  if (modes > 1)
    return usage_error("sample", "give one of --greedy, --temperature and --beam");
  if (opt_given(&o, "--beam") && beam < 1)
    return usage_error("sample", "--beam wants a width of 1 or more");
  if (opt_given(&o, "--top-k") && opt_given(&o, "--beam"))
    return usage_error("sample", "--top-k samples; it does not go with --beam");
  if (opt_given(&o, "--greedy"))
    temp = 0;
  if (length > 100000 || beam > 4096)
    return usage_error("sample", "--%s is too large", length > 100000 ? "length" : "beam");

  Session s;
  TensorSet ck;
  tset_init(&ck);
  Vocab v = {0};
  rnnc_dim dims[40];
  int ndims = 0;
  rnnc_generator *g = NULL;
  int32_t *pre = NULL, *out = NULL;
  size_t npre = 0;
  char err[1024] = "";
  if ((st = session_open(&s, path, opt_str(&o, "--model"))))
    goto done;
  if (safetensors_read(opt_str(&o, "--params"), &ck, err, sizeof err) != RNNC_OK) {
    st = user_error("%s", err);
    goto done;
  }
  const char *vj = tset_getmeta(&ck, "rnnc.vocab");
  if (!vj) {
    st = user_error("'%s' holds no vocabulary (rnnc.vocab): sample from a checkpoint written by rnnc train",
                    opt_str(&o, "--params"));
    goto done;
  }
  if (vocab_from_json(&v, vj, err, sizeof err) != RNNC_OK) {
    st = user_error("%s: %s", opt_str(&o, "--params"), err);
    goto done;
  }
  const char *prefix = opt_str(&o, "--prefix");
  if (prefix && *prefix) {
    if (vocab_encode(&v, "--prefix", prefix, strlen(prefix), &pre, &npre, NULL, err, sizeof err) != RNNC_OK) {
      st = user_error("%s", err);
      goto done;
    }
  }
  if (!npre) { /* no prefix: start from token 0 (which is not printed) */
    free(pre);
    if (!(pre = calloc(1, sizeof *pre))) {
      st = user_error("out of memory");
      goto done;
    }
    npre = 1;
    prefix = NULL;
  }
  if ((st = session_dims(&s, &o, v.n, 0, 0, dims, 40, &ndims)))
    goto done;
  if (rnnc_generator_new(s.ctx, s.md->name, ndims, dims, beam > 1 ? (int)beam : 1, &g) ||
      rnnc_generator_load_params(g, opt_str(&o, "--params")) || rnnc_generator_threads(g, nth)) {
    st = user_error("%s", rnnc_errmsg(s.ctx));
    goto done;
  }
  int eos = -1;
  if (opt_given(&o, "--end")) {
    const char *e = strcmp(opt_str(&o, "--end"), "\\n") == 0 ? "\n" : opt_str(&o, "--end");
    int32_t *ids = NULL;
    size_t n = 0;
    if (!beam) {
      st = usage_error("sample", "--end goes with --beam");
      goto done;
    }
    if (vocab_encode(&v, "--end", e, strlen(e), &ids, &n, NULL, err, sizeof err) != RNNC_OK || n != 1) {
      free(ids);
      st = n != 1 && !err[0] ? user_error("--end '%s' is %zu tokens; it must be one", e, n) : user_error("%s", err);
      goto done;
    }
    eos = ids[0];
    free(ids);
  }
  if (!(out = malloc((length ? length : 1) * sizeof *out))) {
    st = user_error("out of memory");
    goto done;
  }
  for (uint64_t k = 0; k < (beam ? 1 : count); k++) {
    double score = 0;
    int rc = beam ? rnnc_beam_search(g, pre, (int)npre, (int)length, (int)beam, lnorm, eos, out, &score)
                  : rnnc_generate(g, pre, (int)npre, (int)length, temp, (int)topk, seed + k, out);
    if (rc != RNNC_OK) {
      st = user_error("%s", rnnc_errmsg(s.ctx));
      goto done;
    }
    size_t len = (size_t)length; /* a beam that ended: up to its end token */
    for (size_t i = 0; eos >= 0 && i < len; i++)
      if (out[i] == eos)
        len = i + 1;
    char *text = vocab_decode(&v, out, len);
    if (!text) {
      st = user_error("out of memory");
      goto done;
    }
    if (count > 1 && !beam)
      printf("--- sample %llu (seed %llu)\n", (unsigned long long)k + 1, (unsigned long long)(seed + k));
    printf("%s%s%s\n", prefix ? prefix : "", prefix && v.kind == VOCAB_WORD ? " " : "", text);
    if (beam)
      printf("--- beam %llu: log p = %.4f\n", (unsigned long long)beam, score);
    free(text);
  }
done:
  rnnc_generator_free(g);
  free(pre);
  free(out);
  for (int i = 0; i < ndims; i++)
    free((char *)dims[i].name);
  vocab_free(&v);
  tset_clear(&ck);
  if (s.ctx)
    session_close(&s);
  return st;
}

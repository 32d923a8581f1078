/* cmd_init.c — `rnnc init MODEL.rnn --out P`: parameters initialized as
 * PyTorch does by default, and with --inputs random example inputs, both as
 * safetensors files for `rnnc run`. */
#include <string.h>

#include "cli.h"

static const OptSpec spec[] = {
    {"--out", 1, 0},
    {"--inputs", 1, 0},
    {"--seed", 1, 0},
    {"--dim", 1, 1},
    {"--model", 1, 0},
};

static void help(void)
{
  fputs("usage: rnnc init MODEL.rnn --out PARAMS [--inputs INPUTS] [--seed N]\n"
        "                 [--dim NAME=N ...] [--model NAME]\n"
        "\n"
        "Write the model's parameters to PARAMS (safetensors, float32, one tensor per\n"
        "parameter named <node>.<param>), initialized as PyTorch does by default:\n"
        "embeddings N(0, 1); a cell's parameters U(-1/sqrt(H), 1/sqrt(H)) with H its\n"
        "state size; a softmax's weight and bias U(-1/sqrt(d), 1/sqrt(d)) with d its\n"
        "input size.\n"
        "\n"
        "options:\n"
        "  --out PARAMS      where to write the parameters (required)\n"
        "  --inputs INPUTS   also write random inputs for `rnnc run`: token ids and\n"
        "                    targets uniform over their range (the embedding's V, the\n"
        "                    softmax's K; with an ignore index, about one target in four\n"
        "                    is it), float inputs N(0, 1); T = 8 and B = 4 unless given\n"
        "                    with --dim\n"
        "  --seed N          random seed (default 0); the same seed gives the same files\n"
        "  --dim NAME=N      give dimension NAME the size N (overrides the model's\n"
        "                    default; T and B set the inputs' length and batch); repeatable\n"
        "  --model NAME      the model to use when the file has several\n"
        "\n"
        "exit status: 0 written, 1 an error in the model or the files, 2 bad usage\n",
        stdout);
}

/* The number of distinct values input i may take: the row count of an
 * embedding it feeds, the class count of a softmax it is the target of (the
 * smallest when several); 0 when nothing bounds it. *hasignore and *ignore:
 * the ignore index of a softmax it is the target of. */
static long token_range(const Model *md, int i, const Env *env, int *hasignore, long *ignore)
{
  long range = 0, v;
  const char *bad;
  *hasignore = 0;
  for (int j = 0; j < md->nnode; j++) {
    const MNode *n = &md->node[j];
    int bounds = (n->kind == M_EMBEDDING && n->narg > 0 && n->arg[0] == i) ||
                 (n->kind == M_SOFTMAX && n->target == i);
    if (bounds && dim_eval(n->size[0], env, &v, &bad) && (range == 0 || v < range))
      range = v;
    if (n->kind == M_SOFTMAX && n->target == i && n->hasignore) {
      *hasignore = 1;
      *ignore = n->ignore;
    }
  }
  return range;
}

/* Random inputs for md into out, shapes evaluated with env. */
static int make_inputs(Loaded *ld, const Model *md, const Env *env, uint64_t seed, TensorSet *out)
{
  Rng r;
  rng_seed(&r, seed ^ 0x5eed0f1a7a5e7ull); /* a stream apart from the parameters' */
  for (int i = 0; i < md->nnode; i++) {
    const MNode *n = &md->node[i];
    if (n->kind != M_INPUT)
      continue;
    int64_t dim[TENSOR_MAXRANK];
    for (int k = 0; k < n->shape.rank; k++) {
      long v;
      const char *bad;
      if (!dim_eval(n->shape.d[k], env, &v, &bad))
        return user_error("dimension '%s' of input '%s' has no value; give it with --dim %s=N",
                          bad, n->name, bad);
      dim[k] = v;
    }
    int dt = n->dtype == DT_I32 ? DT_I32 : DT_F32;
    Tensor *t = tset_add(out, n->name, dt, n->shape.rank, dim);
    if (!t)
      return user_error("out of memory making input '%s' of model '%s'", n->name, ld->name);
    int64_t numel = tensor_numel(t);
    if (dt == DT_I32) {
      int hasignore;
      long ignore = 0, range = token_range(md, i, env, &hasignore, &ignore);
      int32_t *p = t->data;
      for (int64_t e = 0; e < numel; e++) {
        p[e] = range > 0 ? (int32_t)(rng_next(&r) % (uint64_t)range) : 0;
        if (hasignore && e > 0 && rng_uniform(&r) < 0.25) /* padding, as gradcheck makes */
          p[e] = (int32_t)ignore;
      }
    } else if (mnode_is_mask(n)) { /* right padding: row b has a random length in [1, T] */
      float *p = t->data;
      int64_t T = dim[0], B = dim[1];
      for (int64_t b = 0; b < B; b++) {
        int64_t len = 1 + (int64_t)(rng_next(&r) % (uint64_t)T);
        for (int64_t s = 0; s < T; s++)
          p[s * B + b] = s < len ? 1.0f : 0.0f;
      }
    } else {
      float *p = t->data;
      for (int64_t e = 0; e < numel; e++)
        p[e] = (float)rng_normal(&r);
    }
  }
  return EXIT_OK;
}

/* name, shape, numbers: one row per tensor of s. */
static void show_tensors(Arena *a, const TensorSet *s)
{
  Table t;
  table_init(&t, a, 4);
  t.right[3] = 1;
  for (int i = 0; i < s->n; i++) {
    const Tensor *x = &s->t[i];
    table_row(&t, (const char *[]){x->name, dtype_name(x->dtype), fmt_dims(a, x->dim, x->rank),
                                   fmt_count(a, tensor_numel(x))});
  }
  table_print(stdout, &t, "  ");
}

int cmd_init(int argc, char **argv)
{
  Opts o;
  const char *path;
  int st = opts_parse(&o, "init", spec, sizeof spec / sizeof spec[0], argc, argv);
  if (st)
    return st;
  if (o.help) {
    help();
    return EXIT_OK;
  }
  uint64_t seed;
  if ((st = opts_model_path(&o, &path)) || (st = opts_require(&o, "--out")) ||
      (st = opt_u64(&o, "--seed", 0, &seed)))
    return st;
  Loaded ld;
  if ((st = load_model(&ld, path, PASS_VERIFY, NULL)))
    return st;
  Model *md = pick_model(&ld, opt_str(&o, "--model"));
  Env env = {0};
  if (!md || (st = parse_dims(&ld, md, &o, &env))) {
    loaded_free(&ld);
    return md ? st : EXIT_USER;
  }
  bind_defaults(&ld, md, &env);

  char err[512];
  TensorSet params, inputs;
  tset_init(&params);
  tset_init(&inputs);
  const char *out = opt_str(&o, "--out"), *inpath = opt_str(&o, "--inputs");
  char seedstr[32];
  snprintf(seedstr, sizeof seedstr, "%llu", (unsigned long long)seed);
  /* make everything first, so that an error leaves no file written */
  if (init_params(md, &env, seed, &params, err, sizeof err) != RNNC_OK) {
    st = user_error("%s", err);
    goto done;
  }
  if (inpath) {
    long v;
    const char *T = intern(ld.m->names, "T", 1), *B = intern(ld.m->names, "B", 1);
    if (!env_get(&env, T, &v))
      env_set(ld.m->arena, &env, T, 8);
    if (!env_get(&env, B, &v))
      env_set(ld.m->arena, &env, B, 4);
    if ((st = make_inputs(&ld, md, &env, seed, &inputs)))
      goto done;
  }
  if (tset_setmeta(&params, "model", md->name) || tset_setmeta(&params, "seed", seedstr) ||
      tset_setmeta(&inputs, "model", md->name) || tset_setmeta(&inputs, "seed", seedstr)) {
    st = user_error("out of memory");
    goto done;
  }
  if (safetensors_write(out, &params, err, sizeof err) != RNNC_OK ||
      (inpath && safetensors_write(inpath, &inputs, err, sizeof err) != RNNC_OK)) {
    st = user_error("%s", err);
    goto done;
  }
  printf("wrote %s: the %d parameters of model %s (seed %s)\n", out, params.n, md->name, seedstr);
  show_tensors(ld.m->arena, &params);
  if (inpath) {
    printf("wrote %s: random inputs of model %s\n", inpath, md->name);
    show_tensors(ld.m->arena, &inputs);
  }
  st = EXIT_OK;
done:
  tset_clear(&params);
  tset_clear(&inputs);
  loaded_free(&ld);
  return st;
}

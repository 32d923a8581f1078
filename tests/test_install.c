/* test_install.c — `cmake --install` of this build directory (the one holding
 * RNNC_BINARY) into a temporary prefix, then what a C project does with it:
 * a program built with `cc ... $(pkg-config --cflags --libs rnnc)` and a CMake
 * project on find_package(rnnc) that load, JIT-compile and run a tiny model;
 * the same model compiled ahead of time by the installed `rnnc compile` and
 * linked into a program with `$(pkg-config --cflags --libs rnnc-rt)` and with
 * a CMake project on rnnc::rt; each one's output checked against the model
 * run here by the JIT; and every installed file in place. Each test installs
 * into its own fresh prefix. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "rnnc.h"
#include "testutil.h"

/* A tiny language model; T = 5, B = 3 in both consumers. */
#define TINY_V 11
static const char tiny_model[] = "model tiny(V = 11, E = 4, H = 6) {\n"
                                 "  input tokens: i32[T, B], targets: i32[T, B]\n"
                                 "  x = embedding(tokens, V, E)\n"
                                 "  h = lstm(x, H = H)\n"
                                 "  loss = softmax(h, V, target = targets)\n"
                                 "  output loss\n"
                                 "}\n";

/* The consumer's code (C text; the model's text is put in front as `text`):
 * the loss with every parameter zero (each logit 0: ln V), then with
 * PyTorch's initialization from seed 7. The test runs the same below. */
static const char consumer_body[] =
  "#include <stdio.h>\n"
  "#include <string.h>\n"
  "#include <rnnc.h>\n"
  "\n"
  "static int fail(rnnc_ctx *ctx, const char *what)\n"
  "{\n"
  "  fprintf(stderr, \"%s: %s\\n\", what, rnnc_errmsg(ctx));\n"
  "  rnnc_close(ctx);\n"
  "  return 1;\n"
  "}\n"
  "\n"
  "int main(void)\n"
  "{\n"
  "  rnnc_ctx *ctx = rnnc_open();\n"
  "  rnnc_net *net;\n"
  "  rnnc_dim dims[] = {{\"T\", 5}, {\"B\", 3}};\n"
  "  if (rnnc_load(ctx, \"tiny.rnn\", text) != RNNC_OK)\n"
  "    return fail(ctx, \"load\");\n"
  "  if (rnnc_compile(ctx, \"tiny\", 2, dims, 0, &net) != RNNC_OK)\n"
  "    return fail(ctx, \"compile\");\n"
  "  int32_t tok[15], tgt[15];\n"
  "  for (int i = 0; i < 15; i++)\n"
  "    tok[i] = (7 * i + 3) % 11, tgt[i] = (5 * i + 1) % 11;\n"
  "  if (rnnc_set(net, \"tokens\", tok, sizeof tok) || rnnc_set(net, \"targets\", tgt, sizeof tgt))\n"
  "    return fail(ctx, \"set\");\n"
  "  for (int i = 0; i < rnnc_tensor_count(net); i++) {\n"
  "    const char *name = rnnc_tensor_name(net, i);\n"
  "    int rank;\n"
  "    int64_t dim[4], n = 1;\n"
  "    if (!strchr(name, '.'))\n"
  "      continue; /* a parameter: <node>.<param> */\n"
  "    rnnc_tensor_shape(net, name, NULL, &rank, dim);\n"
  "    for (int k = 0; k < rank; k++)\n"
  "      n *= dim[k];\n"
  "    memset(rnnc_data(net, name), 0, (size_t)n * sizeof(float));\n"
  "  }\n"
  "  float zero, seeded;\n"
  "  if (rnnc_forward(net) || rnnc_get(net, \"loss\", &zero, sizeof zero))\n"
  "    return fail(ctx, \"forward\");\n"
  "  if (rnnc_init_params(net, 7) || rnnc_forward(net) || rnnc_get(net, \"loss\", &seeded, sizeof seeded))\n"
  "    return fail(ctx, \"forward\");\n"
  "  printf(\"loss %.9g %.9g\\n\", zero, seeded);\n"
  "  rnnc_net_free(net);\n"
  "  rnnc_close(ctx);\n"
  "  return 0;\n"
  "}\n";

/* The AOT consumer: tiny compiled by `rnnc compile` (prefix tiny, B 3, T 5)
 * into tiny.o and tiny.h, linked against librnnc_rt.a only. The loss with
 * every parameter zero, then with the parameters fill gives; the forward
 * program carries the cell states from call to call, so it is reset between. */
static const char aot_consumer[] =
  "#include <stdio.h>\n"
  "#include <stdlib.h>\n"
  "#include <string.h>\n"
  "#include \"tiny.h\"\n"
  "\n"
  "int main(void)\n"
  "{\n"
  "  static float params[TINY_PARAM_FLOATS];\n"
  "  size_t bytes = (TINY_FORWARD_WS_BYTES(1) + 63) / 64 * 64;\n"
  "  void *ws = aligned_alloc(64, bytes);\n"
  "  if (tiny_forward_init(ws, bytes, 1) != RNNC_OK) {\n"
  "    fprintf(stderr, \"init: %s\\n\", rnnc_aot_message(NULL));\n"
  "    return 1;\n"
  "  }\n"
  "  int32_t tok[15], tgt[15];\n"
  "  for (int i = 0; i < 15; i++)\n"
  "    tok[i] = (7 * i + 3) % 11, tgt[i] = (5 * i + 1) % 11;\n"
  "  float zero, filled;\n"
  "  tiny_forward_io io = {tok, tgt, &zero};\n"
  "  if (tiny_forward(ws, params, &io) != RNNC_OK) {\n"
  "    fprintf(stderr, \"forward: %s\\n\", tiny_message(ws));\n"
  "    return 1;\n"
  "  }\n"
  "  for (int i = 0; i < TINY_NPARAM; i++) {\n"
  "    const rnnc_aot_param *p = &tiny_model.param[i];\n"
  "    for (int64_t k = 0; k < p->numel; k++)\n"
  "      params[p->offset + k] = 0.25f * (float)((int)((k * 7 + (int64_t)strlen(p->name)) % 13) - 6);\n"
  "  }\n"
  "  tiny_forward_reset(ws);\n"
  "  io.loss = &filled;\n"
  "  if (tiny_forward(ws, params, &io) != RNNC_OK) {\n"
  "    fprintf(stderr, \"forward: %s\\n\", tiny_message(ws));\n"
  "    return 1;\n"
  "  }\n"
  "  printf(\"loss %.9g %.9g\\n\", zero, filled);\n"
  "  free(ws);\n"
  "  return 0;\n"
  "}\n";

/* The loss of tiny on the consumers' tokens and targets, computed here by the
 * JIT of this build: with the parameters rnnc_init_params(7) gives
 * (consumer_body's "seeded"), or those aot_consumer's fill gives. */
enum { PARAMS_SEEDED, PARAMS_FILLED };
static float loss_here(int params)
{
  rnnc_ctx *ctx = rnnc_open();
  rnnc_net *net;
  rnnc_dim dims[] = {{"T", 5}, {"B", 3}};
  cr_assert_eq(rnnc_load(ctx, "tiny.rnn", tiny_model), RNNC_OK, "%s", rnnc_errmsg(ctx));
  cr_assert_eq(rnnc_compile(ctx, "tiny", 2, dims, 0, &net), RNNC_OK, "%s", rnnc_errmsg(ctx));
  int32_t tok[15], tgt[15];
  for (int i = 0; i < 15; i++)
    tok[i] = (7 * i + 3) % 11, tgt[i] = (5 * i + 1) % 11;
  cr_assert_eq(rnnc_set(net, "tokens", tok, sizeof tok), RNNC_OK);
  cr_assert_eq(rnnc_set(net, "targets", tgt, sizeof tgt), RNNC_OK);
  if (params == PARAMS_SEEDED)
    cr_assert_eq(rnnc_init_params(net, 7), RNNC_OK);
  int nparam = 0;
  for (int i = 0; params == PARAMS_FILLED && i < rnnc_tensor_count(net); i++) {
    const char *name = rnnc_tensor_name(net, i);
    int rank;
    int64_t dim[4], n = 1;
    if (!strchr(name, '.'))
      continue; /* a parameter: <node>.<param> */
    cr_assert_eq(rnnc_tensor_shape(net, name, NULL, &rank, dim), RNNC_OK);
    for (int k = 0; k < rank; k++)
      n *= dim[k];
    float *w = rnnc_data(net, name);
    for (int64_t k = 0; k < n; k++)
      w[k] = 0.25f * (float)((int)((k * 7 + (int64_t)strlen(name)) % 13) - 6);
    nparam++;
  }
  cr_assert(params != PARAMS_FILLED || nparam == 7, "tiny has 7 parameters, the net %d", nparam);
  float loss;
  cr_assert_eq(rnnc_forward(net), RNNC_OK, "%s", rnnc_errmsg(ctx));
  cr_assert_eq(rnnc_get(net, "loss", &loss, sizeof loss), RNNC_OK);
  rnnc_net_free(net);
  rnnc_close(ctx);
  return loss;
}

/* ---- the prefix ---- */

static char prefix[512];

static void setup(void)
{
  tmpdir_make("install");
  snprintf(prefix, sizeof prefix, "%s", tmp_path("prefix"));
}

/* The prefix is deeper than tmpdir_remove goes. */
static void teardown(void)
{
  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_dir());
  run_cmd(cmd, NULL);
  tmpdir_remove();
}

/* `cmake --install <this build> --prefix <prefix>`. */
static void install(void)
{
  char build[512], cmd[1400], *out;
  snprintf(build, sizeof build, "%s", RNNC_BINARY);
  *strrchr(build, '/') = 0;
  snprintf(cmd, sizeof cmd, "cmake --install '%s' --prefix '%s'", build, prefix);
  int st = run_cmd(cmd, &out);
  cr_assert_eq(st, 0, "%s:\n%s", cmd, out);
  free(out);
}

/* prefix/rel, in a static buffer rotated over 8 calls. */
static const char *inst(const char *rel)
{
  static char buf[8][700];
  static int k;
  char *p = buf[k++ & 7];
  snprintf(p, sizeof buf[0], "%s/%s", prefix, rel);
  return p;
}

/* Write the consumer's main.c into dir: the model's text as a C string, then
 * consumer_body. */
static void write_consumer(const char *path)
{
  FILE *f = fopen(path, "w");
  cr_assert_not_null(f, "cannot write %s", path);
  fputs("static const char text[] =\n  \"", f);
  for (const char *p = tiny_model; *p; p++)
    fputs(*p == '\n' ? (p[1] ? "\\n\"\n  \"" : "\\n\"") : (char[]){*p, 0}, f);
  fputs(";\n", f);
  fputs(consumer_body, f);
  cr_assert_eq(fclose(f), 0);
}

/* Parse the consumer's "loss ZERO SEEDED" line and check both numbers. */
static void check_losses(const char *out, const char *what)
{
  const char *line = strstr(out, "loss ");
  float zero, seeded;
  cr_assert(line && sscanf(line, "loss %g %g", &zero, &seeded) == 2, "%s printed:\n%s", what, out);
  cr_assert_float_eq(zero, logf(TINY_V), 1e-6, "%s: zero parameters give loss %.9g, not ln %d", what, zero,
                     TINY_V);
  float here = loss_here(PARAMS_SEEDED);
  cr_assert(seeded == here, "%s: seeded loss %.9g, the build's library %.9g", what, seeded, here);
  cr_assert(seeded != zero && seeded > 1.0f && seeded < 5.0f, "%s: seeded loss %.9g", what, seeded);
}

/* In dir: tiny.rnn compiled by the installed rnnc into tiny.o and tiny.h
 * (the host's CPU), and aot_consumer as main.c. */
static void write_aot_consumer(const char *dir)
{
  char path[700], cmd[2400], *out;
  snprintf(path, sizeof path, "%s/tiny.rnn", dir);
  write_bytes(path, tiny_model, strlen(tiny_model));
  snprintf(cmd, sizeof cmd,
           "cd '%s' && '%s' compile tiny.rnn -o tiny.o --header tiny.h --prefix tiny --batch 3 --seq 5", dir,
           inst(RNNC_INSTALL_BINDIR "/rnnc"));
  cr_assert_eq(run_cmd(cmd, &out), 0, "%s:\n%s", cmd, out);
  free(out);
  snprintf(path, sizeof path, "%s/main.c", dir);
  write_bytes(path, aot_consumer, strlen(aot_consumer));
}

/* Parse the AOT consumer's "loss ZERO FILLED" line and check both numbers
 * (the JIT's code for this CPU: within 1e-5, relative); and that the program
 * `app` needs no LLVM. */
static void check_aot_losses(const char *out, const char *app, const char *what)
{
  const char *line = strstr(out, "loss ");
  float zero, filled;
  cr_assert(line && sscanf(line, "loss %g %g", &zero, &filled) == 2, "%s printed:\n%s", what, out);
  cr_assert_float_eq(zero, logf(TINY_V), 1e-6, "%s: zero parameters give loss %.9g, not ln %d", what, zero,
                     TINY_V);
  float here = loss_here(PARAMS_FILLED);
  cr_assert(fabsf(filled - here) <= 1e-5f * fabsf(here), "%s: loss %.9g, the JIT's %.9g", what, filled, here);
  cr_assert(fabsf(filled - zero) > 0.01f, "%s: loss %.9g with parameters, %.9g without", what, filled, zero);
  char cmd[800], *libs;
  snprintf(cmd, sizeof cmd, "ldd '%s'", app);
  cr_assert_eq(run_cmd(cmd, &libs), 0, "%s:\n%s", cmd, libs);
  cr_assert(strstr(libs, "libgomp") && !strstr(libs, "LLVM") && !strstr(libs, "jansson"),
            "%s: %s needs:\n%s", what, app, libs);
  free(libs);
}

TestSuite(install, .init = setup, .fini = teardown, .timeout = 300);

/* Every installed file, where docs/api.md says. */
Test(install, files)
{
  install();
  char cmd[1400], *out;
  struct stat sb;
  const char *files[] = {
    RNNC_INSTALL_INCLUDEDIR "/rnnc.h",         RNNC_INSTALL_INCLUDEDIR "/rnnc_base.h",
    RNNC_INSTALL_INCLUDEDIR "/rnnc_ops.h",     RNNC_INSTALL_INCLUDEDIR "/rnnc_aot.h",
    RNNC_INSTALL_LIBDIR "/librnnc.a",          RNNC_INSTALL_LIBDIR "/librnnc_rt.a",
    RNNC_INSTALL_LIBDIR "/pkgconfig/rnnc.pc",  RNNC_INSTALL_LIBDIR "/pkgconfig/rnnc-rt.pc",
    RNNC_INSTALL_LIBDIR "/cmake/rnnc/rnncConfig.cmake",
    RNNC_INSTALL_LIBDIR "/cmake/rnnc/rnncConfigVersion.cmake",
    RNNC_INSTALL_LIBDIR "/cmake/rnnc/rnncTargets.cmake",
    RNNC_INSTALL_LIBDIR "/cmake/rnnc/rnncRtTargets.cmake",
  };
  for (size_t i = 0; i < sizeof files / sizeof *files; i++)
    cr_expect(stat(inst(files[i]), &sb) == 0 && S_ISREG(sb.st_mode) && sb.st_size > 0, "%s is not installed",
              files[i]);

  snprintf(cmd, sizeof cmd, "'%s' --version", inst(RNNC_INSTALL_BINDIR "/rnnc"));
  cr_assert_eq(run_cmd(cmd, &out), 0, "%s:\n%s", cmd, out);
  cr_assert_str_eq(out, "rnnc 0.1.0\n");
  free(out);

  /* each installed header compiles alone, strictly */
  const char *headers[] = {"rnnc.h", "rnnc_base.h", "rnnc_ops.h", "rnnc_aot.h"};
  for (size_t i = 0; i < sizeof headers / sizeof *headers; i++) {
    snprintf(cmd, sizeof cmd,
             "printf '#include <%s>\\nint x;\\n' | cc -std=c17 -Wall -Wextra -Wpedantic -Werror -fsyntax-only -x c - "
             "$(PKG_CONFIG_PATH='%s' pkg-config --cflags rnnc)",
             headers[i], inst(RNNC_INSTALL_LIBDIR "/pkgconfig"));
    cr_expect_eq(run_cmd(cmd, &out), 0, "%s:\n%s", cmd, out);
    free(out);
  }

  /* the runtime's link line has no LLVM; the library's has */
  snprintf(cmd, sizeof cmd, "PKG_CONFIG_PATH='%s' pkg-config --libs rnnc-rt", inst(RNNC_INSTALL_LIBDIR "/pkgconfig"));
  cr_assert_eq(run_cmd(cmd, &out), 0, "%s:\n%s", cmd, out);
  cr_expect(strstr(out, "-lrnnc_rt") && strstr(out, "-lsleef") && strstr(out, "-fopenmp") && !strstr(out, "LLVM"),
            "rnnc-rt.pc: %s", out);
  free(out);
  snprintf(cmd, sizeof cmd, "PKG_CONFIG_PATH='%s' pkg-config --cflags --libs rnnc",
           inst(RNNC_INSTALL_LIBDIR "/pkgconfig"));
  cr_assert_eq(run_cmd(cmd, &out), 0, "%s:\n%s", cmd, out);
  cr_expect(strstr(out, "-lrnnc ") && strstr(out, "-lrnnc_rt ") && strstr(out, "-lLLVM-19") && strstr(out, "-ljansson"), "rnnc.pc: %s", out);
  free(out);
}

/* cc prog.c $(pkg-config --cflags --libs rnnc): load, JIT-compile, run. */
Test(install, pkg_config_consumer)
{
  install();
  char cmd[2400], *out;
  write_consumer(tmp_path("main.c"));
  snprintf(cmd, sizeof cmd,
           "cd '%s' && cc -std=c17 -Wall -Wextra -Werror -o app main.c $(PKG_CONFIG_PATH='%s' pkg-config --cflags "
           "--libs rnnc) && ./app",
           tmp_dir(), inst(RNNC_INSTALL_LIBDIR "/pkgconfig"));
  cr_assert_eq(run_cmd(cmd, &out), 0, "%s:\n%s", cmd, out);
  check_losses(out, "the pkg-config consumer");
  free(out);
}

/* A CMake project: find_package(rnnc CONFIG REQUIRED), rnnc::rnnc. */
Test(install, cmake_consumer)
{
  install();
  char cmd[2400], *out;
  cr_assert_eq(mkdir(tmp_path("proj"), 0755), 0);
  write_consumer(tmp_path("proj/main.c"));
  const char cmakelists[] = "cmake_minimum_required(VERSION 3.20)\n"
                            "project(consumer LANGUAGES C)\n"
                            "find_package(rnnc 0.1 CONFIG REQUIRED)\n"
                            "add_executable(app main.c)\n"
                            "target_link_libraries(app PRIVATE rnnc::rnnc)\n";
  write_bytes(tmp_path("proj/CMakeLists.txt"), cmakelists, strlen(cmakelists));
  snprintf(cmd, sizeof cmd,
           "cmake -S '%s' -B '%s' -DCMAKE_PREFIX_PATH='%s' -DCMAKE_BUILD_TYPE=Release >/dev/null "
           "&& cmake --build '%s' >/dev/null && '%s/app'",
           tmp_path("proj"), tmp_path("proj/build"), prefix, tmp_path("proj/build"), tmp_path("proj/build"));
  cr_assert_eq(run_cmd(cmd, &out), 0, "%s:\n%s", cmd, out);
  check_losses(out, "the CMake consumer");
  free(out);
}

/* A model compiled ahead of time by the installed rnnc, linked with
 * cc main.c tiny.o $(pkg-config --cflags --libs rnnc-rt). */
Test(install, aot_pkg_config_consumer)
{
  install();
  char cmd[2400], *out;
  write_aot_consumer(tmp_dir());
  snprintf(cmd, sizeof cmd,
           "cd '%s' && cc -std=c17 -Wall -Wextra -Werror -o app main.c tiny.o $(PKG_CONFIG_PATH='%s' pkg-config "
           "--cflags --libs rnnc-rt) && ./app",
           tmp_dir(), inst(RNNC_INSTALL_LIBDIR "/pkgconfig"));
  cr_assert_eq(run_cmd(cmd, &out), 0, "%s:\n%s", cmd, out);
  check_aot_losses(out, tmp_path("app"), "the pkg-config AOT consumer");
  free(out);
}

/* The same in a CMake project: find_package(rnnc CONFIG REQUIRED COMPONENTS
 * rt), which loads no LLVM, and rnnc::rt. */
Test(install, aot_cmake_consumer)
{
  install();
  char cmd[2400], *out;
  cr_assert_eq(mkdir(tmp_path("proj"), 0755), 0);
  write_aot_consumer(tmp_path("proj"));
  const char cmakelists[] = "cmake_minimum_required(VERSION 3.20)\n"
                            "project(aot_consumer LANGUAGES C)\n"
                            "find_package(rnnc 0.1 CONFIG REQUIRED COMPONENTS rt)\n"
                            "if(TARGET rnnc::rnnc OR DEFINED LLVM_DIR)\n"
                            "  message(FATAL_ERROR \"COMPONENTS rt loaded the JIT's dependencies\")\n"
                            "endif()\n"
                            "add_executable(app main.c tiny.o)\n"
                            "target_link_libraries(app PRIVATE rnnc::rt)\n";
  write_bytes(tmp_path("proj/CMakeLists.txt"), cmakelists, strlen(cmakelists));
  snprintf(cmd, sizeof cmd,
           "cmake -S '%s' -B '%s' -DCMAKE_PREFIX_PATH='%s' -DCMAKE_BUILD_TYPE=Release >/dev/null "
           "&& cmake --build '%s' >/dev/null && '%s/app'",
           tmp_path("proj"), tmp_path("proj/build"), prefix, tmp_path("proj/build"), tmp_path("proj/build"));
  cr_assert_eq(run_cmd(cmd, &out), 0, "%s:\n%s", cmd, out);
  check_aot_losses(out, tmp_path("proj/build/app"), "the CMake AOT consumer");
  free(out);
}

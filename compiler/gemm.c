/* gemm.c — LLVM IR for C[M, N] (+)= op(A) · op(B), float32, row-major, with
 * every size, leading dimension and flag a compile-time constant.
 * require: a module of cx. produce: in it, gemm_gen2's sym_pack, sym_rows,
 * sym_colsp, sym_cols, sym_packa and sym_colspa, or gemm_gen's sym,
 * sym_pack and sym_packed (see ir.h, "compiler/gemm.c").
 *
 * op(B) is packed into column panels of NR columns, panel p holding
 * pack[(p·K + k)·NR + j] = op(B)[k, p·NR + j] (zero past column N), so the
 * micro-kernel reads it contiguously. One KC slice of k over rows [m0, m1)
 * and panels [p0, p1) (blk) runs as
 *   for each NC block of columns    (its KC·NC floats of panels, in L3)
 *     for each MC block of rows     (op(A)'s block packed in scratch: MC·KC
 *                                    floats, MR-row micro-panels, k-major)
 *       for each panel p of the column block:
 *         for each MR rows: micro-kernel MR x NR over the slice, then the
 *         rows left (1 .. MR-1) by kernels of 4, 2 and 1 rows (the 2 and 1
 *         by pairs of panels when M >= MR: gen_pairs)
 * and every function runs the slices in increasing order: _rows and _colsp
 * over B packed once (by _pack), _cols packing each slice of a chunk of NCS
 * columns of op(B) into its scratch first; _colspa is _colsp with op(A)
 * packed beforehand by _packa, every block as the loop above packs it. KC, MC and NC were tuned against
 * OpenBLAS on the benchmark shapes (bench/README.md); KC = 1024 keeps C5's K
 * in one slice, so C is read and written once.
 * The micro-kernel keeps an MR x NR block of C in MR·NR/W vector registers
 * (W = 8 floats with AVX2 + FMA on the host, else 4), and per k broadcasts
 * one float of each A row against NR/W vectors of the panel with llvm.fma;
 * its rows and vectors are unrolled in the IR, its k loop is a loop. Row
 * tails get kernels of fewer rows, which compute each element exactly as
 * the full kernel does; the last panel, when NR does not divide N, is
 * computed into an MR x NR tile in scratch and its columns added to C as
 * the kernel adds them. Kernels are not inlined (one copy each: compile
 * time). So every element of C is summed in increasing k within a
 * slice, from 0, with one fma per k, and the slices are added to C in
 * increasing order: its bits depend on M, N, K and the flags only, not on
 * the function, the range, or where a range starts. Nothing here is
 * JIT-specific: no addresses, no triple, scratch from the caller. */
#include <string.h>

#include <llvm-c/Core.h>

#include "ir.h"

enum {
  MR = 6,     /* rows of the register block */
  KC = 1024,  /* k per slice: a panel slice (KC·NR floats) in L2 */
  MC = 120,   /* rows per block, a multiple of MR */
  NC = 4096,  /* columns per block, a multiple of every NR */
  NCS = 512,  /* columns of op(B) that _cols packs at a time, a multiple of every NR */
  MAXNR = 16, /* the widest NR */
  NACC = 2 * MAXNR / 4, /* accumulators of a row: two panels of 4-float vectors */
  PFD = 32,   /* k steps before the end of a slice at which C is prefetched */
  PFA = 8,    /* rows of A ahead that GEMM_AT's packing prefetches */
  PG = 8,     /* panels that packing a non-transposed op(B) reads a row of at once */
  PFB = 1 << 18, /* floats of op(B) (K·N) above which the micro-kernel prefetches
                    the next panel: larger than L2, B streams from L3 or memory
                    (C5's step: 0.89-0.96x the time, C2's 0.92-1.0x; at C1's
                    256 KiB the prefetches, all hits, cost 1-3%) */
};

typedef struct G {
  IRB ir;
  LLVMTypeRef vty;
  LLVMValueRef fma;
  LLVMTypeRef fmaty;
  int W, NR, flags;
  int pfb;                /* the micro-kernels prefetch the next panel (PFB) */
  int64_t M, N, K, lda, ldb, ldc;
  int64_t np, npf, nt;    /* panels, whole panels, columns of the partial one */
  int linkage;            /* of the entry points: 0 external, 1 internal */
  LLVMValueRef kern[MR + 1]; /* by rows: MR, 4, 2, 1 */
  LLVMValueRef kern2[3];     /* 2 and 1 rows of two panels at once (pairs) */
  int pairs;                 /* the rows left after 4 go by pairs of panels */
  LLVMValueRef packb, blk, blkp; /* blkp: blk on op(A) packed by _packa */
  const char *sym;
} G;

void gemm_block(int flags, int *mr, int *nr)
{
  *mr = MR;
  *nr = !(flags & GEMM_PORTABLE) && irb_avx2_fma() ? 16 : 8;
}

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
static int64_t up16(int64_t n) { return (n + 15) / 16 * 16; } /* 64 bytes */

/* llvm.prefetch(p, rw, locality, data): 0 read / 1 write; locality 3 keeps
 * the line in L1, 2 in L2. A prefetch never faults, wherever p points. */
static void prefetch(G *g, LLVMValueRef p, int rw, int locality)
{
  IRB *ir = &g->ir;
  unsigned pid = LLVMLookupIntrinsicID("llvm.prefetch", 13);
  LLVMValueRef pf = LLVMGetIntrinsicDeclaration(ir->mod, pid, &ir->ptr, 1);
  LLVMTypeRef i32 = LLVMInt32TypeInContext(ir->cx);
  LLVMValueRef pa[4] = {p, LLVMConstInt(i32, (unsigned)rw, 0), LLVMConstInt(i32, (unsigned)locality, 0),
                        LLVMConstInt(i32, 1, 0)};
  LLVMBuildCall2(ir->b, LLVMIntrinsicGetType(ir->cx, pid, &ir->ptr, 1), pf, pa, 4, "");
}

/* Floats of one block of op(A) packed: up to MC rows (rounded up to MR, a
 * partial micro-panel takes a whole one) by up to KC columns. */
static int64_t ablock(int64_t M, int64_t K) { return min64((M + MR - 1) / MR * MR, MC) * min64(K, KC); }

/* Floats of B's panels for the widest NR (gemm_gen's pack). */
static int64_t bpanels(int64_t N, int64_t K) { return (N + MAXNR - 1) / MAXNR * MAXNR * K; }

/* The scratch of _rows and _colsp: op(A)'s block, then an MR x NR tile (for
 * the last panel when NR does not divide N). */
static int64_t rowscratch(int64_t M, int64_t K) { return up16(ablock(M, K)) + MR * MAXNR; }

size_t gemm_pack_size(int64_t M, int64_t N, int64_t K) { return (size_t)(bpanels(N, K) + rowscratch(M, K)); }

static int spec_nr(const GemmSpec *s)
{
  int mr, nr;
  gemm_block(s->flags, &mr, &nr);
  return nr;
}

int64_t gemm_npanels(const GemmSpec *s) { return (s->N + spec_nr(s) - 1) / spec_nr(s); }

size_t gemm_packsize(const GemmSpec *s) { return (size_t)(gemm_npanels(s) * spec_nr(s) * s->K); }

/* _cols' scratch: a chunk of op(B) (the panels of NCS columns, one KC
 * slice), then rowscratch. */
static int64_t bchunk(const GemmSpec *s)
{
  int nr = spec_nr(s);
  return up16(min64(NCS / nr, gemm_npanels(s)) * nr * min64(s->K, KC));
}

int64_t gemm_cols_chunk(const GemmSpec *s) { return min64(NCS / spec_nr(s), gemm_npanels(s)); }

int64_t gemm_rows_chunk(void) { return MC / MR; }

int64_t gemm_kslice(void) { return KC; }

size_t gemm_scratchsize(const GemmSpec *s) { return (size_t)(bchunk(s) + rowscratch(s->M, s->K)); }

/* A function of the module named sym + suffix: nounwind, every pointer
 * parameter noalias, parameters named after names (space-separated). */
static LLVMValueRef newfn(G *g, const char *suffix, LLVMTypeRef *pt, unsigned n, int internal, const char *names)
{
  IRB *ir = &g->ir;
  char name[256];
  snprintf(name, sizeof name, "%s%s", g->sym, suffix);
  LLVMValueRef fn = irb_fn(ir, name, pt, n, names);
  if (internal)
    LLVMSetLinkage(fn, LLVMInternalLinkage);
  return fn;
}

static LLVMValueRef sub(G *g, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildNSWSub(g->ir.b, a, b, ""); }
static LLVMValueRef mulv(G *g, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildNSWMul(g->ir.b, a, b, ""); }

static LLVMValueRef smin(G *g, LLVMValueRef a, LLVMValueRef b)
{
  IRB *ir = &g->ir;
  return LLVMBuildSelect(ir->b, LLVMBuildICmp(ir->b, LLVMIntSLT, a, b, ""), a, b, "");
}

static LLVMValueRef call(G *g, LLVMValueRef fn, LLVMValueRef *args, unsigned n)
{
  IRB *ir = &g->ir;
  return LLVMBuildCall2(ir->b, LLVMGlobalGetValueType(fn), fn, args, n, "");
}

/* if (cond) { ... }: if_begin leaves the builder in the then block,
 * returns the block after; if_end closes it. */
static LLVMBasicBlockRef if_begin(G *g, LLVMValueRef cond, const char *name)
{
  IRB *ir = &g->ir;
  LLVMBasicBlockRef then = LLVMAppendBasicBlockInContext(ir->cx, ir->fn, name);
  LLVMBasicBlockRef after = LLVMAppendBasicBlockInContext(ir->cx, ir->fn, "after");
  LLVMBuildCondBr(ir->b, cond, then, after);
  LLVMPositionBuilderAtEnd(ir->b, then);
  return after;
}

static void if_end(G *g, LLVMBasicBlockRef after)
{
  IRB *ir = &g->ir;
  LLVMBuildBr(ir->b, after);
  LLVMPositionBuilderAtEnd(ir->b, after);
}

/* ---- packing ----------------------------------------------------------------- */

/* The element (k, n) of op(B): B[k·ldb + n], or with GEMM_BT B[n·ldb + k]. */
static LLVMValueRef opb(G *g, LLVMValueRef B, LLVMValueRef k, LLVMValueRef n)
{
  IRB *ir = &g->ir;
  LLVMValueRef off =
      g->flags & GEMM_BT ? irb_add(ir, irb_mulc(ir, n, g->ldb), k) : irb_add(ir, irb_mulc(ir, k, g->ldb), n);
  return irb_loadu(ir, ir->f32, irb_gep(ir, B, off));
}

/* shufflevector(a, b) by a mask of 8 (indices into a, then b). */
static LLVMValueRef shuf8(G *g, LLVMValueRef a, LLVMValueRef b, const int m[8])
{
  IRB *ir = &g->ir;
  LLVMValueRef c[8];
  for (int i = 0; i < 8; i++)
    c[i] = LLVMConstInt(ir->i32, (unsigned long long)m[i], 0);
  return LLVMBuildShuffleVector(ir->b, a, b, LLVMConstVector(c, 8), "");
}

/* The 8 x 8 transpose of r[0..7] (vectors of 8 floats) into o: o[k][j] =
 * r[j][k]. Three stages of two-input shuffles, the masks of AVX's
 * unpcklps/unpckhps, shufps and vperm2f128, which is what the x86 back end
 * makes of them (24 shuffles, no memory); other targets get their own. */
static void transpose8(G *g, LLVMValueRef r[8], LLVMValueRef o[8])
{
  static const int lo[8] = {0, 8, 1, 9, 4, 12, 5, 13}, hi[8] = {2, 10, 3, 11, 6, 14, 7, 15};
  static const int even[8] = {0, 1, 8, 9, 4, 5, 12, 13}, odd[8] = {2, 3, 10, 11, 6, 7, 14, 15};
  static const int first[8] = {0, 1, 2, 3, 8, 9, 10, 11}, second[8] = {4, 5, 6, 7, 12, 13, 14, 15};
  LLVMValueRef t[8], u[8];
  for (int i = 0; i < 8; i += 2) { /* t[i], t[i+1]: rows i, i+1 interleaved */
    t[i] = shuf8(g, r[i], r[i + 1], lo);
    t[i + 1] = shuf8(g, r[i], r[i + 1], hi);
  }
  for (int h = 0; h < 8; h += 4) /* u[h + c]: column c (and c + 4) of rows h .. h+3 */
    for (int c = 0; c < 4; c++)
      u[h + c] = shuf8(g, t[h + c / 2], t[h + 2 + c / 2], c % 2 ? odd : even);
  for (int c = 0; c < 4; c++) {
    o[c] = shuf8(g, u[c], u[4 + c], first);
    o[c + 4] = shuf8(g, u[c], u[4 + c], second);
  }
}

/* void packb(B, dst, c0, c1, k0, kc, ps), internal: panels [c0, c1) of
 * op(B), rows [k0, k0 + kc), with panel p at dst + (p - c0)·ps:
 *   dst[(p - c0)·ps + k·NR + j] = op(B)[k0 + k, p·NR + j], 0 past column N */
static void gen_packb(G *g)
{
  IRB *ir = &g->ir;
  LLVMTypeRef pt[7] = {ir->ptr, ir->ptr, ir->i64, ir->i64, ir->i64, ir->i64, ir->i64};
  g->packb = newfn(g, ".packb", pt, 7, 1, "B dst c0 c1 k0 kc ps");
  LLVMValueRef B = LLVMGetParam(g->packb, 0), dst = LLVMGetParam(g->packb, 1), c0 = LLVMGetParam(g->packb, 2);
  LLVMValueRef c1 = LLVMGetParam(g->packb, 3), k0 = LLVMGetParam(g->packb, 4), kc = LLVMGetParam(g->packb, 5);
  LLVMValueRef ps = LLVMGetParam(g->packb, 6);
  IRLoop lp, lk, lj;
  if (g->npf) { /* whole panels */
    if (g->flags & GEMM_BT) { /* B's rows are the panel's columns: a transpose */
      LLVMValueRef p = irb_loop_begin(ir, &lp, c0, smin(g, c1, irb_i64(ir, g->npf)), 1, "panel");
      LLVMValueRef d = irb_gep(ir, dst, mulv(g, sub(g, p, c0), ps));
      LLVMValueRef k8 = irb_i64(ir, 0);
      if (g->NR % 8 == 0) { /* 8 k at a time: 8 floats of each row, 8 x 8 transposes */
        LLVMTypeRef v8 = LLVMVectorType(ir->f32, 8);
        k8 = LLVMBuildAnd(ir->b, kc, irb_i64(ir, -8), "");
        LLVMValueRef k = irb_loop_begin(ir, &lk, irb_i64(ir, 0), k8, 8, "k");
        for (int64_t j0 = 0; j0 < g->NR; j0 += 8) {
          LLVMValueRef r[8], o[8];
          for (int64_t j = 0; j < 8; j++) {
            LLVMValueRef row = irb_add(ir, irb_mulc(ir, p, g->NR), irb_i64(ir, j0 + j));
            r[j] = irb_loadu(ir, v8, irb_gep(ir, B, irb_add(ir, irb_mulc(ir, row, g->ldb), irb_add(ir, k0, k))));
          }
          transpose8(g, r, o);
          for (int64_t c = 0; c < 8; c++)
            irb_storeu(ir, o[c], irb_gep(ir, d, irb_add(ir, irb_mulc(ir, irb_add(ir, k, irb_i64(ir, c)), g->NR),
                                                      irb_i64(ir, j0))));
        }
        irb_loop_end(ir, &lk);
      }
      /* the k left (all of them when NR is not a multiple of 8), one by one */
      LLVMValueRef j = irb_loop_begin(ir, &lj, irb_i64(ir, 0), irb_i64(ir, g->NR), 1, "j");
      LLVMValueRef src = irb_gep(ir, B, irb_add(ir, irb_mulc(ir, irb_add(ir, irb_mulc(ir, p, g->NR), j), g->ldb), k0));
      LLVMValueRef k = irb_loop_begin(ir, &lk, k8, kc, 1, "k");
      irb_storeu(ir, irb_loadu(ir, ir->f32, irb_gep(ir, src, k)),
                 irb_gep(ir, d, irb_add(ir, irb_mulc(ir, k, g->NR), j)));
      irb_loop_end(ir, &lk);
      irb_loop_end(ir, &lj);
    } else { /* a row of a panel is NR contiguous floats of B: per k, the
              * rows of PG panels, PG·NR floats of one row of B (B's rows
              * ldb apart: one panel alone reads a line per row, as many
              * pages as rows, which the prefetchers do not follow) */
      LLVMTypeRef rowty = LLVMVectorType(ir->f32, (unsigned)g->NR);
      LLVMValueRef pe = smin(g, c1, irb_i64(ir, g->npf));
      LLVMValueRef pg = irb_loop_begin(ir, &lp, c0, pe, PG, "pgroup");
      LLVMValueRef pg1 = smin(g, irb_add(ir, pg, irb_i64(ir, PG)), pe);
      LLVMValueRef k = irb_loop_begin(ir, &lk, irb_i64(ir, 0), kc, 1, "k");
      LLVMValueRef srow = irb_gep(ir, B, irb_mulc(ir, irb_add(ir, k0, k), g->ldb));
      LLVMValueRef p = irb_loop_begin(ir, &lj, pg, pg1, 1, "p");
      LLVMValueRef d = irb_gep(ir, dst, irb_add(ir, mulv(g, sub(g, p, c0), ps), irb_mulc(ir, k, g->NR)));
      irb_storeu(ir, irb_loadu(ir, rowty, irb_gep(ir, srow, irb_mulc(ir, p, g->NR))), d);
      irb_loop_end(ir, &lj);
      irb_loop_end(ir, &lk);
    }
    irb_loop_end(ir, &lp);
  }
  if (g->nt) { /* the partial panel, if in range */
    LLVMBasicBlockRef after = if_begin(g, LLVMBuildICmp(ir->b, LLVMIntSGT, c1, irb_i64(ir, g->npf), ""), "tail");
    LLVMValueRef d = irb_gep(ir, dst, mulv(g, sub(g, irb_i64(ir, g->npf), c0), ps));
    LLVMValueRef k = irb_loop_begin(ir, &lk, irb_i64(ir, 0), kc, 1, "k");
    LLVMValueRef row = irb_mulc(ir, k, g->NR);
    for (int64_t j = 0; j < g->NR; j++) {
      LLVMValueRef v =
          j < g->nt ? opb(g, B, irb_add(ir, k0, k), irb_i64(ir, g->npf * g->NR + j)) : LLVMConstReal(ir->f32, 0);
      irb_storeu(ir, v, irb_gep(ir, d, irb_add(ir, row, irb_i64(ir, j))));
    }
    irb_loop_end(ir, &lk);
    if_end(g, after);
  }
  LLVMBuildRetVoid(ir->b);
}

/* gen_packa with GEMM_AT, k in [k, k + nk) of the slice (nk unrolled):
 * prefetch the rows PFA ahead, then per micro-panel its nk rows of MR
 * floats, then the rows past the last whole micro-panel. */
static void packa_at(G *g, LLVMValueRef A, LLVMValueRef Ap, LLVMValueRef i0, LLVMValueRef nq, LLVMValueRef rem,
                     LLVMValueRef k0, LLVMValueRef kc, LLVMValueRef k, int nk)
{
  IRB *ir = &g->ir;
  IRLoop lq, li;
  LLVMValueRef src = irb_gep(ir, A, irb_add(ir, irb_mulc(ir, irb_add(ir, k0, k), g->lda), i0));
  for (int j = 0; j < nk; j++)
    for (int64_t l = 0; l <= min64(MC, g->M); l += 16) { /* past the end: no fault */
      LLVMValueRef off = irb_i64(ir, (PFA + j) * g->lda + l);
      prefetch(g, LLVMBuildGEP2(ir->b, ir->f32, src, &off, 1, ""), 0, 3);
    }
  if (g->M >= MR) {
    LLVMTypeRef mrty = LLVMVectorType(ir->f32, MR);
    LLVMValueRef q = irb_loop_begin(ir, &lq, irb_i64(ir, 0), nq, 1, "aq");
    LLVMValueRef d = irb_gep(ir, Ap, irb_mulc(ir, irb_add(ir, mulv(g, q, kc), k), MR));
    for (int j = 0; j < nk; j++) {
      LLVMValueRef v = irb_loadu(ir, mrty, irb_gep(ir, src, irb_add(ir, irb_mulc(ir, q, MR), irb_i64(ir, j * g->lda))));
      irb_storeu(ir, v, irb_gep(ir, d, irb_i64(ir, j * MR)));
    }
    irb_loop_end(ir, &lq);
  }
  LLVMValueRef tsrc = irb_gep(ir, src, irb_mulc(ir, nq, MR)),
               tdst = irb_gep(ir, Ap, irb_mulc(ir, irb_add(ir, mulv(g, nq, kc), k), MR));
  LLVMValueRef r = irb_loop_begin(ir, &li, irb_i64(ir, 0), rem, 1, "ar");
  for (int j = 0; j < nk; j++)
    irb_storeu(ir, irb_loadu(ir, ir->f32, irb_gep(ir, tsrc, irb_add(ir, r, irb_i64(ir, j * g->lda)))),
               irb_gep(ir, tdst, irb_add(ir, r, irb_i64(ir, j * MR))));
  irb_loop_end(ir, &li);
}

/* Ap[(q·kc + k)·MR + r] = op(A)[i0 + q·MR + r, k0 + k] for the rows·kc
 * elements of a block (rows = nq·MR + rem): MR-row micro-panels, read
 * contiguously by the kernel. */
static void gen_packa(G *g, LLVMValueRef A, LLVMValueRef Ap, LLVMValueRef i0, LLVMValueRef rows, LLVMValueRef nq,
                      LLVMValueRef rem, LLVMValueRef k0, LLVMValueRef kc)
{
  IRB *ir = &g->ir;
  IRLoop li, lk, lq;
  if (!(g->flags & GEMM_AT)) { /* A's rows are contiguous in k */
    LLVMValueRef k8 = irb_i64(ir, 0);
    if (g->W == 8 && g->M >= MR) {
      /* whole micro-panels 8 k at a time: 8 floats of each of the MR rows,
       * an 8 x 8 transpose in registers, then MR floats per k in one store
       * (one element at a time, the packing of A cost a quarter of a GEMM
       * of N = 64: [2048 x 512] x [512 x 64] at 0.74 of OpenBLAS) */
      LLVMTypeRef v8 = LLVMVectorType(ir->f32, 8);
      LLVMValueRef lanes[MR];
      for (int r = 0; r < MR; r++)
        lanes[r] = LLVMConstInt(ir->i32, (unsigned long long)r, 0);
      LLVMValueRef first = LLVMConstVector(lanes, MR), poison = LLVMGetPoison(v8);
      k8 = LLVMBuildAnd(ir->b, kc, irb_i64(ir, -8), "");
      LLVMValueRef q = irb_loop_begin(ir, &lq, irb_i64(ir, 0), nq, 1, "aq");
      LLVMValueRef src = irb_gep(ir, A, irb_add(ir, irb_mulc(ir, irb_add(ir, i0, irb_mulc(ir, q, MR)), g->lda), k0));
      LLVMValueRef dst = irb_gep(ir, Ap, irb_mulc(ir, mulv(g, q, kc), MR));
      LLVMValueRef k = irb_loop_begin(ir, &lk, irb_i64(ir, 0), k8, 8, "ak8");
      LLVMValueRef r8[8], o[8];
      for (int r = 0; r < 8; r++)
        r8[r] = r < MR ? irb_loadu(ir, v8, irb_gep(ir, src, irb_add(ir, irb_i64(ir, r * g->lda), k))) : poison;
      transpose8(g, r8, o);
      for (int c = 0; c < 8; c++)
        irb_storeu(ir, LLVMBuildShuffleVector(ir->b, o[c], poison, first, ""),
                   irb_gep(ir, dst, irb_mulc(ir, irb_add(ir, k, irb_i64(ir, c)), MR)));
      irb_loop_end(ir, &lk);
      irb_loop_end(ir, &lq);
    }
    /* the rest one element at a time: the k past k8 of whole micro-panels,
     * every k of the last rows */
    LLVMValueRef whole = irb_mulc(ir, nq, MR);
    LLVMValueRef i = irb_loop_begin(ir, &li, irb_i64(ir, 0), rows, 1, "ai");
    LLVMValueRef kfrom = LLVMBuildSelect(ir->b, LLVMBuildICmp(ir->b, LLVMIntSLT, i, whole, ""), k8, irb_i64(ir, 0), "");
    LLVMValueRef q = LLVMBuildUDiv(ir->b, i, irb_i64(ir, MR), "");
    LLVMValueRef dst = irb_add(ir, irb_mulc(ir, mulv(g, q, kc), MR), sub(g, i, irb_mulc(ir, q, MR)));
    LLVMValueRef src = irb_gep(ir, A, irb_add(ir, irb_mulc(ir, irb_add(ir, i0, i), g->lda), k0));
    LLVMValueRef k = irb_loop_begin(ir, &lk, kfrom, kc, 1, "ak");
    irb_storeu(ir, irb_loadu(ir, ir->f32, irb_gep(ir, src, k)), irb_gep(ir, Ap, irb_add(ir, dst, irb_mulc(ir, k, MR))));
    irb_loop_end(ir, &lk);
    irb_loop_end(ir, &li);
    return;
  }
  /* GEMM_AT: A's rows are contiguous in i, MR of them one micro-panel row;
   * each k reads a few cache lines of a row lda floats after the last, so
   * the lines PFA rows ahead are prefetched (without: 5-10% slower on the
   * weight gradient [2048 x 4096] x [4096 x 512], behind OpenBLAS). By
   * chunks of 8 k, each micro-panel's 8 k in a row: k by k, the stores
   * went to every micro-panel in turn, kc·MR floats apart (with N = 64,
   * [512 x 1024] x [1024 x 64] ran at 0.75 of OpenBLAS, 0.92 without AT) */
  LLVMValueRef k8 = LLVMBuildAnd(ir->b, kc, irb_i64(ir, -8), "");
  LLVMValueRef k = irb_loop_begin(ir, &lk, irb_i64(ir, 0), k8, 8, "ak8");
  packa_at(g, A, Ap, i0, nq, rem, k0, kc, k, 8);
  irb_loop_end(ir, &lk);
  k = irb_loop_begin(ir, &lk, k8, kc, 1, "ak");
  packa_at(g, A, Ap, i0, nq, rem, k0, kc, k, 1);
  irb_loop_end(ir, &lk);
}

/* The element (i, k) of op(A): A[i·lda + k], or with GEMM_AT A[k·lda + i]. */
static LLVMValueRef opa(G *g, LLVMValueRef A, LLVMValueRef i, LLVMValueRef k)
{
  IRB *ir = &g->ir;
  LLVMValueRef off =
      g->flags & GEMM_AT ? irb_add(ir, irb_mulc(ir, k, g->lda), i) : irb_add(ir, irb_mulc(ir, i, g->lda), k);
  return irb_loadu(ir, ir->f32, irb_gep(ir, A, off));
}

/* Rows of op(A) of all M packed as every block packs them (gen_packa), for
 * _colspa: slice by slice (k0 = 0, KC, ...), slice k0 at k0·Mp (Mp: M
 * rounded up to MR), row i of it at (i/MR)·kc·MR + i%MR, k·MR apart. */
static int64_t mpad(int64_t M) { return (M + MR - 1) / MR * MR; }

size_t gemm_apacksize(const GemmSpec *s) { return (size_t)(mpad(s->M) * s->K); }

int64_t gemm_apack_grain(void) { return MR; }

/* void _packa(A, apack, m0, m1): rows [m0, m1) of op(A) into apack (m0 a
 * multiple of MR): per micro-panel and k, its MR floats in one store. */
static void gen_packa_rows(G *g)
{
  IRB *ir = &g->ir;
  LLVMTypeRef pt[4] = {ir->ptr, ir->ptr, ir->i64, ir->i64};
  LLVMValueRef P[4];
  LLVMGetParams(newfn(g, "_packa", pt, 4, g->linkage, "A apack m0 m1"), P);
  LLVMValueRef A = P[0], D = P[1], m0 = P[2], m1 = P[3];
  LLVMTypeRef mrty = LLVMVectorType(ir->f32, MR);
  LLVMValueRef poison = LLVMGetPoison(mrty);
  int64_t Mp = mpad(g->M);
  IRLoop lq, lk, lr;
  LLVMValueRef i0 = irb_loop_begin(ir, &lq, m0, m1, MR, "q");
  LLVMValueRef rows = sub(g, smin(g, irb_add(ir, i0, irb_i64(ir, MR)), m1), i0);
  for (int64_t k0 = 0; k0 < g->K; k0 += KC) { /* a few slices: unrolled */
    int64_t kc = min64(KC, g->K - k0);
    LLVMValueRef d = irb_gep(ir, D, irb_add(ir, irb_i64(ir, k0 * Mp), irb_mulc(ir, i0, kc)));
    LLVMValueRef full = LLVMBuildICmp(ir->b, LLVMIntEQ, rows, irb_i64(ir, MR), "");
    LLVMBasicBlockRef then = LLVMAppendBasicBlockInContext(ir->cx, ir->fn, "full");
    LLVMBasicBlockRef part = LLVMAppendBasicBlockInContext(ir->cx, ir->fn, "part");
    LLVMBasicBlockRef after = LLVMAppendBasicBlockInContext(ir->cx, ir->fn, "packed");
    LLVMBuildCondBr(ir->b, full, then, part);
    LLVMPositionBuilderAtEnd(ir->b, then);
    LLVMValueRef k = irb_loop_begin(ir, &lk, irb_i64(ir, 0), irb_i64(ir, kc), 1, "k");
    LLVMValueRef v = poison;
    for (int r = 0; r < MR; r++)
      v = LLVMBuildInsertElement(ir->b, v, opa(g, A, irb_add(ir, i0, irb_i64(ir, r)), irb_add(ir, irb_i64(ir, k0), k)),
                                 irb_i64(ir, r), "");
    irb_storeu(ir, v, irb_gep(ir, d, irb_mulc(ir, k, MR)));
    irb_loop_end(ir, &lk);
    LLVMBuildBr(ir->b, after);
    LLVMPositionBuilderAtEnd(ir->b, part); /* the last micro-panel's rows */
    LLVMValueRef r = irb_loop_begin(ir, &lr, irb_i64(ir, 0), rows, 1, "r");
    k = irb_loop_begin(ir, &lk, irb_i64(ir, 0), irb_i64(ir, kc), 1, "kr");
    irb_storeu(ir, opa(g, A, irb_add(ir, i0, r), irb_add(ir, irb_i64(ir, k0), k)),
               irb_gep(ir, d, irb_add(ir, irb_mulc(ir, k, MR), r)));
    irb_loop_end(ir, &lk);
    irb_loop_end(ir, &lr);
    LLVMBuildBr(ir->b, after);
    LLVMPositionBuilderAtEnd(ir->b, after);
  }
  irb_loop_end(ir, &lq);
  LLVMBuildRetVoid(ir->b);
}

/* ---- the micro-kernel -------------------------------------------------------- */

/* for (k = lo; k < hi; k++) acc[r][v] = fma(A[k·MR + r], Bp[k·NR + v·W ..], acc[r][v])
 * for r < mr, v < nv, and with a second panel Bp2 (else NULL) acc[r][nv + v]
 * likewise from Bp2; out gets the accumulators after the loop (out may be
 * in). */
static void gen_kloop(G *g, int mr, int nv, LLVMValueRef A, LLVMValueRef Bp, LLVMValueRef Bp2, LLVMValueRef pf,
                      LLVMValueRef lo, LLVMValueRef hi, LLVMValueRef in[MR][NACC], LLVMValueRef out[MR][NACC])
{
  IRB *ir = &g->ir;
  LLVMBasicBlockRef pre = LLVMGetInsertBlock(ir->b);
  LLVMBasicBlockRef head = LLVMAppendBasicBlockInContext(ir->cx, ir->fn, "k");
  LLVMBasicBlockRef body = LLVMAppendBasicBlockInContext(ir->cx, ir->fn, "kbody");
  LLVMBasicBlockRef exit = LLVMAppendBasicBlockInContext(ir->cx, ir->fn, "kdone");
  LLVMBuildBr(ir->b, head);
  LLVMPositionBuilderAtEnd(ir->b, head);
  LLVMValueRef k = LLVMBuildPhi(ir->b, ir->i64, "k"), acc[MR][NACC], next[MR][NACC];
  LLVMAddIncoming(k, &lo, &pre, 1);
  int nb = nv; /* the panel's vectors */
  if (Bp2)
    nv *= 2;
  for (int r = 0; r < mr; r++)
    for (int v = 0; v < nv; v++) {
      acc[r][v] = LLVMBuildPhi(ir->b, g->vty, "acc");
      LLVMAddIncoming(acc[r][v], &in[r][v], &pre, 1);
    }
  LLVMBuildCondBr(ir->b, LLVMBuildICmp(ir->b, LLVMIntSLT, k, hi, ""), body, exit);
  LLVMPositionBuilderAtEnd(ir->b, body);
  LLVMValueRef bv[NACC];
  LLVMValueRef brow = irb_mulc(ir, k, g->NR);
  for (int v = 0; v < nv; v++)
    bv[v] = irb_loadu(ir, g->vty,
                      irb_gep(ir, v < nb ? Bp : Bp2, irb_add(ir, brow, irb_i64(ir, (int64_t)(v % nb) * g->W))));
  if (pf)
    prefetch(g, irb_gep(ir, pf, brow), 0, 2); /* the next panel's line k, into L2 */
  LLVMValueRef mask = LLVMConstNull(LLVMVectorType(LLVMInt32TypeInContext(ir->cx), (unsigned)g->W));
  LLVMValueRef poison = LLVMGetPoison(g->vty);
  for (int r = 0; r < mr; r++) {
    LLVMValueRef a =
        LLVMBuildLoad2(ir->b, ir->f32, irb_gep(ir, A, irb_add(ir, irb_mulc(ir, k, MR), irb_i64(ir, r))), "a");
    LLVMValueRef s = LLVMBuildInsertElement(ir->b, poison, a, LLVMConstInt(ir->i64, 0, 0), "");
    s = LLVMBuildShuffleVector(ir->b, s, poison, mask, "splat");
    for (int v = 0; v < nv; v++) {
      LLVMValueRef args[3] = {s, bv[v], acc[r][v]};
      next[r][v] = LLVMBuildCall2(ir->b, g->fmaty, g->fma, args, 3, "");
    }
  }
  LLVMValueRef k1 = LLVMBuildNSWAdd(ir->b, k, irb_i64(ir, 1), "");
  LLVMAddIncoming(k, &k1, &body, 1);
  for (int r = 0; r < mr; r++)
    for (int v = 0; v < nv; v++)
      LLVMAddIncoming(acc[r][v], &next[r][v], &body, 1);
  irb_nounroll(ir, LLVMBuildBr(ir->b, head));
  LLVMPositionBuilderAtEnd(ir->b, exit);
  for (int r = 0; r < mr; r++)
    for (int v = 0; v < nv; v++)
      out[r][v] = acc[r][v];
}

/* void kern(Ap, Bp, C, ldc, kc, first, pf), internal: for r < mr, j < NR,
 *   C[r·ldc + j] = (first ? 0 : C[r·ldc + j]) + Σ_{k < kc} Ap[k·MR + r] Bp[k·NR + j]
 * with the sum in increasing k from 0 (the same bits for every mr); kc >= 1.
 * The pair kernel (pair = 1, named ...p2) has an eighth argument Bp2 and
 * does the same for a second panel at Bp2 into C + NR: with 1 or 2 rows a
 * single panel has 2 or 4 accumulators, too few to cover the FMA's latency
 * (a 2 x 16 tile ran at half the 6 x 16 one's rate), and two panels double
 * them without changing any element's sum.
 * With a large B (g->pfb, the variant named .pf), step k also prefetches
 * pf[k·NR] into L2: the line of the next panel that the next panel's first
 * tile reads at its step k, so a panel streamed from L3 or memory arrives
 * while the one before is computed (pf = Bp when there is nothing to
 * fetch). The MR-row kernel prefetches its C tile near the end of the
 * slice. */
static LLVMValueRef gen_kernel(G *g, int mr, int pair)
{
  IRB *ir = &g->ir;
  /* the micro-kernel depends on mr, NR and the vector type only: one copy
   * per module serves every GEMM in it (compile time) */
  char name[64];
  snprintf(name, sizeof name, "rnnc.gemm.k%dx%d%s.w%d%s", mr, g->NR, pair ? "p2" : "", g->W, g->pfb ? ".pf" : "");
  LLVMValueRef have = LLVMGetNamedFunction(ir->mod, name);
  if (have)
    return have;
  const char *sym = g->sym;
  g->sym = "";
  LLVMTypeRef pt[8] = {ir->ptr, ir->ptr, ir->ptr, ir->i64, ir->i64, ir->i1, ir->ptr, ir->ptr};
  LLVMValueRef fn = newfn(g, name, pt, pair ? 8 : 7, 1, "Ap Bp C ldc kc first pf Bp2");
  g->sym = sym;
  irb_attr(ir, fn, LLVMAttributeFunctionIndex, "noinline"); /* one copy: compile time */
  LLVMValueRef A = LLVMGetParam(fn, 0), Bp = LLVMGetParam(fn, 1), C = LLVMGetParam(fn, 2);
  LLVMValueRef ldc = LLVMGetParam(fn, 3), kc = LLVMGetParam(fn, 4), first = LLVMGetParam(fn, 5);
  LLVMValueRef pf = g->pfb ? LLVMGetParam(fn, 6) : NULL, Bp2 = pair ? LLVMGetParam(fn, 7) : NULL;
  int nv = g->NR / g->W, nvt = pair ? 2 * nv : nv;
  LLVMValueRef acc[MR][NACC], next[MR][NACC];
  for (int r = 0; r < mr; r++)
    for (int v = 0; v < nvt; v++)
      acc[r][v] = LLVMConstNull(g->vty);
  if (mr < MR) {
    gen_kloop(g, mr, nv, A, Bp, Bp2, pf, irb_i64(ir, 0), kc, acc, next);
  } else {
    /* acc = Σ over k in [0, split), prefetch the C tile for writing
     * (llvm.prefetch(p, rw 1, locality 3, data 1), the first and last float
     * of each row), then k in [split, kc): the tile arrives while the last
     * PFD steps run and is not evicted by the panel streaming through L1 */
    LLVMValueRef split = LLVMBuildNSWSub(ir->b, kc, irb_i64(ir, PFD), "");
    split = LLVMBuildSelect(ir->b, LLVMBuildICmp(ir->b, LLVMIntSLT, split, irb_i64(ir, 0), ""), irb_i64(ir, 0), split,
                            "split");
    gen_kloop(g, mr, nv, A, Bp, NULL, pf, irb_i64(ir, 0), split, acc, next);
    for (int r = 0; r < mr; r++)
      for (int e = 0; e < 2; e++)
        prefetch(g, irb_gep(ir, C, irb_add(ir, irb_mulc(ir, ldc, r), irb_i64(ir, e ? g->NR - 1 : 0))), 1, 3);
    gen_kloop(g, mr, nv, A, Bp, NULL, pf, split, kc, next, next);
  }
  /* C += acc (or C = acc on the first slice); a pair's second panel's
   * columns follow the first's */
  for (int r = 0; r < mr; r++)
    for (int v = 0; v < nvt; v++) {
      LLVMValueRef p = irb_gep(ir, C, irb_add(ir, irb_mulc(ir, ldc, r), irb_i64(ir, (int64_t)v * g->W)));
      LLVMValueRef old = irb_loadu(ir, g->vty, p);
      irb_storeu(ir, LLVMBuildSelect(ir->b, first, next[r][v], LLVMBuildFAdd(ir->b, old, next[r][v], ""), ""), p);
    }
  LLVMBuildRetVoid(ir->b);
  return fn;
}

/* ---- one slice of the blocked product ----------------------------------------- */

/* Rows [i, i + h) of one panel: kernel kern (h rows) on the micro-panel
 * rows at Ap; with partial (the last panel, nt < NR columns), into the
 * tile (MR x NR, in scratch), then its nt columns into C, added as the
 * kernel adds: the same bits. */
static void gen_call(G *g, LLVMValueRef kern, LLVMValueRef h, int partial, LLVMValueRef Ap, LLVMValueRef Bpan,
                     LLVMValueRef pf, LLVMValueRef Cp, LLVMValueRef i, LLVMValueRef kc, LLVMValueRef first,
                     LLVMValueRef tile)
{
  IRB *ir = &g->ir;
  LLVMValueRef c = irb_gep(ir, Cp, irb_mulc(ir, i, g->ldc));
  if (!partial) {
    LLVMValueRef args[7] = {Ap, Bpan, c, irb_i64(ir, g->ldc), kc, first, pf};
    call(g, kern, args, 7);
    return;
  }
  LLVMValueRef args[7] = {Ap, Bpan, tile, irb_i64(ir, g->NR), kc, LLVMConstInt(ir->i1, 1, 0), pf};
  call(g, kern, args, 7);
  IRLoop lr;
  LLVMValueRef r = irb_loop_begin(ir, &lr, irb_i64(ir, 0), h, 1, "tr");
  LLVMValueRef src = irb_gep(ir, tile, irb_mulc(ir, r, g->NR)), dst = irb_gep(ir, c, irb_mulc(ir, r, g->ldc));
  for (int64_t j = 0; j < g->nt; j++) {
    LLVMValueRef x = irb_loadu(ir, ir->f32, irb_gep(ir, src, irb_i64(ir, j))), p = irb_gep(ir, dst, irb_i64(ir, j));
    LLVMValueRef old = irb_loadu(ir, ir->f32, p);
    irb_storeu(ir, LLVMBuildSelect(ir->b, first, x, LLVMBuildFAdd(ir->b, old, x, ""), ""), p);
  }
  irb_loop_end(ir, &lr);
}

/* The parts of h = 2 and 1 rows of the rem rows left after MR-row tiles
 * (each there when rem has its bit) of the two panels at Bpan and Bpan2
 * (columns Cp ...): the pair kernels. */
static void gen_pairs(G *g, LLVMValueRef Bpan, LLVMValueRef Bpan2, LLVMValueRef Cp, LLVMValueRef Ap,
                      LLVMValueRef i0, LLVMValueRef nq, LLVMValueRef rem, LLVMValueRef kc, LLVMValueRef first)
{
  IRB *ir = &g->ir;
  LLVMValueRef Aq = irb_gep(ir, Ap, mulv(g, nq, irb_mulc(ir, kc, MR))), iq = irb_add(ir, i0, irb_mulc(ir, nq, MR));
  for (int h = 2; h >= 1; h /= 2) {
    LLVMValueRef r0 = LLVMBuildAnd(ir->b, rem, irb_i64(ir, 7 & ~(2 * h - 1)), "");
    LLVMValueRef has =
        LLVMBuildICmp(ir->b, LLVMIntNE, LLVMBuildAnd(ir->b, rem, irb_i64(ir, h), ""), irb_i64(ir, 0), "");
    LLVMBasicBlockRef after = if_begin(g, has, "pair");
    LLVMValueRef c = irb_gep(ir, Cp, irb_mulc(ir, irb_add(ir, iq, r0), g->ldc));
    LLVMValueRef args[8] = {irb_gep(ir, Aq, r0), Bpan, c, irb_i64(ir, g->ldc), kc, first, Bpan, Bpan2};
    call(g, g->kern2[h], args, 8);
    if_end(g, after);
  }
}

/* One panel against the rows i0 .. i0 + nq·MR + rem of a block, packed at
 * Ap: MR rows at a time, then the rem rows left (rem < MR, or <= M when
 * M < MR) as 4 + 2 + 1 rows, each part there when rem has its bit; with
 * big (g->pairs and a whole panel) only the 4 (the caller does 2 and 1 by
 * pairs of panels). The first tile prefetches the panel at Bnext (the next
 * one, or Bpan). */
static void gen_rows(G *g, int partial, int big, LLVMValueRef Bpan, LLVMValueRef Bnext, LLVMValueRef Cp,
                     LLVMValueRef Ap, LLVMValueRef tile, LLVMValueRef i0, LLVMValueRef nq, LLVMValueRef rem,
                     LLVMValueRef kc, LLVMValueRef first)
{
  IRB *ir = &g->ir;
  LLVMValueRef qstride = irb_mulc(ir, kc, MR);
  if (g->M >= MR) {
    IRLoop lq;
    LLVMValueRef q = irb_loop_begin(ir, &lq, irb_i64(ir, 0), nq, 1, "q");
    LLVMValueRef pf = LLVMBuildSelect(ir->b, LLVMBuildICmp(ir->b, LLVMIntEQ, q, irb_i64(ir, 0), ""), Bnext, Bpan, "");
    gen_call(g, g->kern[MR], irb_i64(ir, MR), partial, irb_gep(ir, Ap, mulv(g, q, qstride)), Bpan, pf, Cp,
             irb_add(ir, i0, irb_mulc(ir, q, MR)), kc, first, tile);
    irb_loop_end(ir, &lq);
  }
  LLVMValueRef Aq = irb_gep(ir, Ap, mulv(g, nq, qstride)), iq = irb_add(ir, i0, irb_mulc(ir, nq, MR));
  for (int h = 4; h >= (big ? 4 : 1); h /= 2) {
    if (!g->kern[h])
      continue;
    LLVMValueRef r0 = LLVMBuildAnd(ir->b, rem, irb_i64(ir, 7 & ~(2 * h - 1)), ""); /* rows of the bigger parts */
    LLVMValueRef has =
        LLVMBuildICmp(ir->b, LLVMIntNE, LLVMBuildAnd(ir->b, rem, irb_i64(ir, h), ""), irb_i64(ir, 0), "");
    LLVMBasicBlockRef after = if_begin(g, has, "mtail");
    gen_call(g, g->kern[h], irb_i64(ir, h), partial, irb_gep(ir, Aq, r0), Bpan, g->M >= MR ? Bpan : Bnext, Cp,
             irb_add(ir, iq, r0), kc, first, tile);
    if_end(g, after);
  }
}

/* void blk(A, Bp, C, Ap, ps, m0, m1, p0, p1, k0, kc, first), internal: the
 * slice [k0, k0 + kc) of C's rows [m0, m1) and panels [p0, p1) (the loop
 * nest of the header comment); panel p of the slice packed at Bp + (p -
 * p0)·ps, scratch at Ap (op(A)'s block, then the tile); first: C = the
 * slice's sum, else C += it. With pre (blkp), A is the slice of op(A)
 * packed by _packa (m0 = 0) and Ap the tile only. */
static void gen_blk(G *g, int pre)
{
  IRB *ir = &g->ir;
  LLVMTypeRef pt[12] = {ir->ptr, ir->ptr, ir->ptr, ir->ptr, ir->i64, ir->i64,
                        ir->i64, ir->i64, ir->i64, ir->i64, ir->i64, ir->i1};
  LLVMValueRef fn = newfn(g, pre ? ".blkp" : ".blk", pt, 12, 1, "A Bp C Ap ps m0 m1 p0 p1 k0 kc first");
  *(pre ? &g->blkp : &g->blk) = fn;
  LLVMValueRef P[12];
  LLVMGetParams(fn, P);
  LLVMValueRef A = P[0], Bp = P[1], C = P[2], Ap = P[3], ps = P[4], m0 = P[5], m1 = P[6], p0 = P[7], p1 = P[8];
  LLVMValueRef k0 = P[9], kc = P[10], first = P[11];
  int64_t ncp = NC / g->NR;
  LLVMValueRef tile = pre ? Ap : irb_gep(ir, Ap, irb_i64(ir, up16(ablock(g->M, g->K))));
  IRLoop lj, li, lp;
  LLVMValueRef pb0 = irb_loop_begin(ir, &lj, p0, p1, ncp, "jb");
  LLVMValueRef pb1 = smin(g, irb_add(ir, pb0, irb_i64(ir, ncp)), p1);
  LLVMValueRef i0 = irb_loop_begin(ir, &li, m0, m1, MC, "ib");
  LLVMValueRef rows = sub(g, smin(g, irb_add(ir, i0, irb_i64(ir, MC)), m1), i0);
  LLVMValueRef nq = LLVMBuildSDiv(ir->b, rows, irb_i64(ir, MR), "nq");
  LLVMValueRef rem = sub(g, rows, irb_mulc(ir, nq, MR));
  if (pre) /* the slice's rows from i0 (a multiple of MR: m0 is 0) */
    Ap = irb_gep(ir, A, mulv(g, i0, kc));
  else
    gen_packa(g, A, Ap, i0, rows, nq, rem, k0, kc);
  if (g->npf) {
    LLVMValueRef pe = smin(g, pb1, irb_i64(ir, g->npf));
    LLVMValueRef p = irb_loop_begin(ir, &lp, pb0, pe, 1, "p");
    LLVMValueRef Bpan = irb_gep(ir, Bp, mulv(g, sub(g, p, p0), ps)), Cp = irb_gep(ir, C, irb_mulc(ir, p, g->NR));
    LLVMValueRef more = LLVMBuildICmp(ir->b, LLVMIntSLT, irb_add(ir, p, irb_i64(ir, 1)), pb1, "");
    LLVMValueRef Bnext = LLVMBuildSelect(ir->b, more, irb_gep(ir, Bpan, ps), Bpan, "");
    gen_rows(g, 0, g->pairs, Bpan, Bnext, Cp, Ap, tile, i0, nq, rem, kc, first);
    if (g->pairs) { /* the 2 and 1 rows: panels p and p + 1 on even p - pb0, the last odd one alone */
      LLVMValueRef even = LLVMBuildICmp(ir->b, LLVMIntEQ, LLVMBuildAnd(ir->b, sub(g, p, pb0), irb_i64(ir, 1), ""),
                                        irb_i64(ir, 0), "");
      LLVMBasicBlockRef after = if_begin(g, even, "even");
      LLVMValueRef two = LLVMBuildICmp(ir->b, LLVMIntSLT, irb_add(ir, p, irb_i64(ir, 1)), pe, "");
      LLVMBasicBlockRef then = LLVMAppendBasicBlockInContext(ir->cx, ir->fn, "two");
      LLVMBasicBlockRef one = LLVMAppendBasicBlockInContext(ir->cx, ir->fn, "one");
      LLVMBuildCondBr(ir->b, two, then, one);
      LLVMPositionBuilderAtEnd(ir->b, then);
      gen_pairs(g, Bpan, irb_gep(ir, Bpan, ps), Cp, Ap, i0, nq, rem, kc, first);
      LLVMBuildBr(ir->b, after);
      LLVMPositionBuilderAtEnd(ir->b, one);
      LLVMValueRef r4 = LLVMBuildAnd(ir->b, rem, irb_i64(ir, 4), ""); /* past the 4 rows gen_rows did */
      gen_rows(g, 0, 0, Bpan, Bpan, Cp, irb_gep(ir, Ap, irb_add(ir, mulv(g, nq, irb_mulc(ir, kc, MR)), r4)), tile,
               irb_add(ir, irb_add(ir, i0, irb_mulc(ir, nq, MR)), r4), irb_i64(ir, 0),
               LLVMBuildAnd(ir->b, rem, irb_i64(ir, 3), ""), kc, first);
      if_end(g, after);
    }
    irb_loop_end(ir, &lp);
  }
  if (g->nt) { /* the partial panel, with the last column block */
    LLVMBasicBlockRef after = if_begin(g, LLVMBuildICmp(ir->b, LLVMIntSGT, pb1, irb_i64(ir, g->npf), ""), "ntail");
    LLVMValueRef Bpan = irb_gep(ir, Bp, mulv(g, sub(g, irb_i64(ir, g->npf), p0), ps));
    gen_rows(g, 1, 0, Bpan, Bpan, irb_gep(ir, C, irb_i64(ir, g->npf * g->NR)), Ap, tile, i0, nq, rem, kc, first);
    if_end(g, after);
  }
  irb_loop_end(ir, &li);
  irb_loop_end(ir, &lj);
  LLVMBuildRetVoid(ir->b);
}

/* ---- the entry points ---------------------------------------------------------- */

/* for kb over the KC slices: *k0, *kc and *first (C = the first slice's
 * sum, unless GEMM_ACC) for the body; close with irb_loop_end(&g->ir, l). */
static void slices_begin(G *g, IRLoop *l, LLVMValueRef *k0, LLVMValueRef *kc, LLVMValueRef *first)
{
  IRB *ir = &g->ir;
  LLVMValueRef kb = irb_loop_begin(ir, l, irb_i64(ir, 0), irb_i64(ir, (g->K + KC - 1) / KC), 1, "kb");
  *k0 = irb_mulc(ir, kb, KC);
  *kc = smin(g, sub(g, irb_i64(ir, g->K), *k0), irb_i64(ir, KC));
  *first =
      g->flags & GEMM_ACC ? LLVMConstInt(ir->i1, 0, 0) : LLVMBuildICmp(ir->b, LLVMIntEQ, kb, irb_i64(ir, 0), "first");
}

/* blk's arguments */
static void blk(G *g, LLVMValueRef A, LLVMValueRef Bp, LLVMValueRef C, LLVMValueRef Ap, LLVMValueRef ps,
                LLVMValueRef m0, LLVMValueRef m1, LLVMValueRef p0, LLVMValueRef p1, LLVMValueRef k0, LLVMValueRef kc,
                LLVMValueRef first)
{
  LLVMValueRef args[12] = {A, Bp, C, Ap, ps, m0, m1, p0, p1, k0, kc, first};
  call(g, g->blk, args, 12);
}

/* The micro-kernels that some range can reach, packb, blk, blkp, then
 * _packa, _pack, _rows, _colsp, _colspa and _cols (see ir.h). */
static void gen_all(G *g)
{
  IRB *ir = &g->ir;
  for (int h = 1; h <= MR; h *= 2)
    if (h <= g->M)
      g->kern[h] = gen_kernel(g, h, 0);
  if (g->M >= MR)
    g->kern[MR] = gen_kernel(g, MR, 0);
  /* pairs where the rows left can be 2 or 1 after whole MR-row tiles, and
   * two whole panels exist */
  g->pairs = g->M >= MR && g->npf >= 2;
  if (g->pairs)
    for (int h = 1; h <= 2; h++)
      g->kern2[h] = gen_kernel(g, h, 1);
  gen_packb(g);
  gen_blk(g, 0);
  gen_blk(g, 1);
  gen_packa_rows(g);
  LLVMValueRef P[6], ps = irb_i64(ir, g->K * g->NR), k0, kc, first;
  IRLoop lk, lc;

  LLVMTypeRef pt[6] = {ir->ptr, ir->ptr, ir->i64, ir->i64};
  LLVMGetParams(newfn(g, "_pack", pt, 4, g->linkage, "B pack p0 p1"), P);
  LLVMValueRef pargs[7] = {P[0], irb_gep(ir, P[1], mulv(g, P[2], ps)), P[2], P[3], irb_i64(ir, 0), irb_i64(ir, g->K),
                           ps};
  call(g, g->packb, pargs, 7);
  LLVMBuildRetVoid(ir->b);

  LLVMTypeRef pt6[6] = {ir->ptr, ir->ptr, ir->ptr, ir->i64, ir->i64, ir->ptr};
  LLVMGetParams(newfn(g, "_rows", pt6, 6, g->linkage, "A pack C m0 m1 scratch"), P);
  slices_begin(g, &lk, &k0, &kc, &first);
  blk(g, P[0], irb_gep(ir, P[1], irb_mulc(ir, k0, g->NR)), P[2], P[5], ps, P[3], P[4], irb_i64(ir, 0),
      irb_i64(ir, g->np), k0, kc, first);
  irb_loop_end(ir, &lk);
  LLVMBuildRetVoid(ir->b);

  LLVMGetParams(newfn(g, "_colsp", pt6, 6, g->linkage, "A pack C p0 p1 scratch"), P);
  slices_begin(g, &lk, &k0, &kc, &first);
  LLVMValueRef Bp = irb_gep(ir, P[1], irb_add(ir, mulv(g, P[3], ps), irb_mulc(ir, k0, g->NR)));
  blk(g, P[0], Bp, P[2], P[5], ps, irb_i64(ir, 0), irb_i64(ir, g->M), P[3], P[4], k0, kc, first);
  irb_loop_end(ir, &lk);
  LLVMBuildRetVoid(ir->b);

  /* _colspa: _colsp with op(A) packed by _packa */
  LLVMGetParams(newfn(g, "_colspa", pt6, 6, g->linkage, "apack pack C p0 p1 scratch"), P);
  slices_begin(g, &lk, &k0, &kc, &first);
  Bp = irb_gep(ir, P[1], irb_add(ir, mulv(g, P[3], ps), irb_mulc(ir, k0, g->NR)));
  LLVMValueRef Aslice = irb_gep(ir, P[0], irb_mulc(ir, k0, mpad(g->M)));
  LLVMValueRef pargsp[12] = {Aslice, Bp, P[2], P[5], ps, irb_i64(ir, 0), irb_i64(ir, g->M), P[3], P[4], k0, kc, first};
  call(g, g->blkp, pargsp, 12);
  irb_loop_end(ir, &lk);
  LLVMBuildRetVoid(ir->b);

  /* _cols: per chunk of NCS columns, per slice: pack, multiply */
  LLVMGetParams(newfn(g, "_cols", pt6, 6, g->linkage, "A B C p0 p1 scratch"), P);
  GemmSpec s = {g->M, g->N, g->K, g->lda, g->ldb, g->ldc, g->flags};
  LLVMValueRef Ap = irb_gep(ir, P[5], irb_i64(ir, bchunk(&s)));
  LLVMValueRef c0 = irb_loop_begin(ir, &lc, P[3], P[4], NCS / g->NR, "chunk");
  LLVMValueRef c1 = smin(g, irb_add(ir, c0, irb_i64(ir, NCS / g->NR)), P[4]);
  slices_begin(g, &lk, &k0, &kc, &first);
  LLVMValueRef cps = irb_mulc(ir, kc, g->NR);
  LLVMValueRef cargs[7] = {P[1], P[5], c0, c1, k0, kc, cps};
  call(g, g->packb, cargs, 7);
  blk(g, P[0], P[5], P[2], Ap, cps, irb_i64(ir, 0), irb_i64(ir, g->M), c0, c1, k0, kc, first);
  irb_loop_end(ir, &lk);
  irb_loop_end(ir, &lc);
  LLVMBuildRetVoid(ir->b);
}

/* ---- the generators ----------------------------------------------------------- */

/* RNNC_ESHAPE with a message for sizes < 1, leading dimensions below the
 * rows' widths, or sizes past 2^40 elements. */
static int check_spec(const char *sym, const GemmSpec *s, char *err, size_t errlen)
{
  const int64_t big = (int64_t)1 << 40;
  if (s->M < 1 || s->N < 1 || s->K < 1) {
    snprintf(err, errlen, "gemm '%s': sizes M = %lld, N = %lld, K = %lld must be at least 1", sym, (long long)s->M,
             (long long)s->N, (long long)s->K);
    return RNNC_ESHAPE;
  }
  if (s->M > big / s->K || s->K > big / s->N || s->M > big / s->N) {
    snprintf(err, errlen, "gemm '%s': sizes M = %lld, N = %lld, K = %lld are too large", sym, (long long)s->M,
             (long long)s->N, (long long)s->K);
    return RNNC_ESHAPE;
  }
  int at = !!(s->flags & GEMM_AT), bt = !!(s->flags & GEMM_BT);
  const struct {
    const char *name, *shape;
    int64_t ld, width, rows;
  } ld[3] = {
      {"lda", at ? "A is [K, M]" : "A is [M, K]", s->lda, at ? s->M : s->K, at ? s->K : s->M},
      {"ldb", bt ? "B is [N, K]" : "B is [K, N]", s->ldb, bt ? s->K : s->N, bt ? s->N : s->K},
      {"ldc", "C is [M, N]", s->ldc, s->N, s->M},
  };
  for (int i = 0; i < 3; i++) {
    if (ld[i].ld < ld[i].width) {
      snprintf(err, errlen, "gemm '%s': %s = %lld is less than a row's %lld floats (%s)", sym, ld[i].name,
               (long long)ld[i].ld, (long long)ld[i].width, ld[i].shape);
      return RNNC_ESHAPE;
    }
    if (ld[i].ld > big / ld[i].rows) {
      snprintf(err, errlen, "gemm '%s': %s = %lld is too large", sym, ld[i].name, (long long)ld[i].ld);
      return RNNC_ESHAPE;
    }
  }
  if (s->flags & ~(GEMM_ACC | GEMM_BT | GEMM_PORTABLE | GEMM_AT))
    die("gemm: unknown flags %#x", (unsigned)s->flags);
  if (strlen(sym) > 200)
    die("gemm: symbol name '%.40s...' too long", sym);
  return RNNC_OK;
}

/* g's types, vector width, panel width and fma for s. */
static void g_init(G *g, LLVMContextRef cx, LLVMModuleRef mod, const char *sym, const GemmSpec *s, int linkage)
{
  IRB *ir = &g->ir;
  *g = (G){.flags = s->flags, .M = s->M, .N = s->N, .K = s->K, .lda = s->lda,
           .ldb = s->ldb, .ldc = s->ldc, .sym = sym, .linkage = linkage};
  g->NR = spec_nr(s);
  g->pfb = s->K * s->N > PFB;
  int fused = g->NR == 16; /* AVX2 + FMA */
  g->W = fused ? 8 : 4;
  g->np = gemm_npanels(s);
  g->npf = s->N / g->NR;
  g->nt = s->N % g->NR;
  irb_init(ir, cx, mod);
  g->vty = LLVMVectorType(ir->f32, (unsigned)g->W);
  /* llvm.fma where the host fuses in hardware; elsewhere llvm.fmuladd, which
   * the back end fuses or not, fixed per target */
  const char *in = fused ? "llvm.fma" : "llvm.fmuladd";
  unsigned id = LLVMLookupIntrinsicID(in, strlen(in));
  g->fma = LLVMGetIntrinsicDeclaration(mod, id, &g->vty, 1);
  g->fmaty = LLVMIntrinsicGetType(cx, id, &g->vty, 1);
}

int gemm_gen2(LLVMContextRef cx, LLVMModuleRef mod, const char *sym, const GemmSpec *s, char *err, size_t errlen)
{
  int rc = check_spec(sym, s, err, errlen);
  if (rc != RNNC_OK)
    return rc;
  G g;
  g_init(&g, cx, mod, sym, s, 0);
  gen_all(&g);
  irb_free(&g.ir);
  return RNNC_OK;
}

/* ---- GEMMs shared by spec (ir.h, gemm_share_fn) ------------------------------- */

static const char *const share_fns[] = {"_pack", "_rows", "_colsp", "_cols", "_packa", "_colspa"};
enum { NSHAREFN = sizeof share_fns / sizeof *share_fns };

typedef struct Shared {
  GemmSpec s;          /* the key (a _pack's: N, K, ldb and its flags only) */
  LLVMModuleRef mod;   /* where its functions are defined */
  const char *sym;     /* their prefix */
  unsigned exported;   /* bit k: share_fns[k] is called from another module */
} Shared;

struct GemmShare {
  Arena *a;
  Shared *e;
  int n, cap;
};

GemmShare *gemm_share_new(Arena *a)
{
  GemmShare *sh = aalloc(a, sizeof *sh);
  sh->a = a;
  return sh;
}

static int same_spec(const GemmSpec *x, const GemmSpec *y)
{
  return x->M == y->M && x->N == y->N && x->K == y->K && x->lda == y->lda && x->ldb == y->ldb &&
         x->ldc == y->ldc && x->flags == y->flags;
}

/* The declaration in mod (of cx) of def, a function of another context:
 * its parameters are pointers and integers, it returns nothing. */
static LLVMValueRef declare_like(LLVMContextRef cx, LLVMModuleRef mod, const char *name, LLVMValueRef def)
{
  LLVMValueRef f = LLVMGetNamedFunction(mod, name);
  if (f)
    return f;
  LLVMTypeRef ft = LLVMGlobalGetValueType(def);
  unsigned n = LLVMCountParamTypes(ft);
  LLVMTypeRef from[8], to[8];
  if (n > 8 || LLVMGetTypeKind(LLVMGetReturnType(ft)) != LLVMVoidTypeKind)
    die("gemm_share: '%s' has a signature it cannot declare", name);
  LLVMGetParamTypes(ft, from);
  for (unsigned i = 0; i < n; i++) {
    LLVMTypeKind k = LLVMGetTypeKind(from[i]);
    if (k == LLVMPointerTypeKind)
      to[i] = LLVMPointerTypeInContext(cx, 0);
    else if (k == LLVMIntegerTypeKind)
      to[i] = LLVMIntTypeInContext(cx, LLVMGetIntTypeWidth(from[i]));
    else
      die("gemm_share: '%s' has a parameter it cannot declare", name);
  }
  f = LLVMAddFunction(mod, name, LLVMFunctionType(LLVMVoidTypeInContext(cx), to, n, 0));
  LLVMSetFunctionCallConv(f, LLVMGetFunctionCallConv(def));
  return f;
}

int gemm_share_fn(GemmShare *sh, LLVMContextRef cx, LLVMModuleRef mod, const char *sym, const GemmSpec *s,
                  const char *fn, LLVMValueRef *out, char *err, size_t errlen)
{
  *out = NULL;
  int k = 0;
  while (k < NSHAREFN && strcmp(share_fns[k], fn))
    k++;
  if (k == NSHAREFN)
    die("gemm_share: no GEMM function '%s'", fn);
  int rc = check_spec(sym, s, err, errlen);
  if (rc != RNNC_OK)
    return rc;
  GemmSpec key = *s;
  if (k == 0) /* the pack: only B's layout matters (gemm_packsize) */
    key = (GemmSpec){.M = 1, .N = s->N, .K = s->K, .lda = s->K, .ldb = s->ldb,
                     .ldc = s->N, .flags = s->flags & (GEMM_BT | GEMM_PORTABLE)};
  Shared *e = NULL;
  for (int i = 0; sh && i < sh->n && !e; i++)
    if (same_spec(&sh->e[i].s, &key))
      e = &sh->e[i];
  char name[300];
  if (!e) {
    G g;
    g_init(&g, cx, mod, sym, &key, 1);
    gen_all(&g);
    irb_free(&g.ir);
    snprintf(name, sizeof name, "%s%s", sym, fn);
    *out = LLVMGetNamedFunction(mod, name);
    if (sh)
      APUSH(sh->a, sh->e, sh->n, sh->cap, ((Shared){.s = key, .mod = mod, .sym = astrdup(sh->a, sym)}));
  } else {
    snprintf(name, sizeof name, "%s%s", e->sym, fn);
    LLVMValueRef def = LLVMGetNamedFunction(e->mod, name);
    if (!def)
      die("gemm_share: gemm_gen2 made no %s", name);
    if (e->mod == mod) {
      *out = def;
    } else {
      LLVMSetLinkage(def, LLVMExternalLinkage);
      e->exported |= 1u << k;
      *out = declare_like(cx, mod, name, def);
    }
  }
  if (!*out)
    die("gemm_share: gemm_gen2 made no %s", name);
  return RNNC_OK;
}

int gemm_share_exported(const GemmShare *sh, LLVMModuleRef mod, const char *name)
{
  for (int i = 0; sh && i < sh->n; i++) {
    const Shared *e = &sh->e[i];
    size_t n = strlen(e->sym);
    if (e->mod != mod || !e->exported || strncmp(name, e->sym, n))
      continue;
    for (int k = 0; k < NSHAREFN; k++)
      if ((e->exported >> k & 1) && strcmp(name + n, share_fns[k]) == 0)
        return 1;
  }
  return 0;
}

/* gemm_gen: gemm_gen2's functions (internal, under sym.g) behind the old
 * entry points; pack holds the panels, then _rows' scratch. */
int gemm_gen(LLVMContextRef cx, LLVMModuleRef mod, const char *sym, int64_t M, int64_t N, int64_t K, int flags,
             char *err, size_t errlen)
{
  GemmSpec s = {M, N, K, K, flags & GEMM_BT ? K : N, N, flags & (GEMM_ACC | GEMM_BT | GEMM_PORTABLE)};
  int rc = check_spec(sym, &s, err, errlen);
  if (rc != RNNC_OK)
    return rc;
  char inner[256];
  snprintf(inner, sizeof inner, "%s.g", sym);
  G g;
  g_init(&g, cx, mod, inner, &s, 1);
  IRB *ir = &g.ir;
  gen_all(&g);
  char name[256];
  snprintf(name, sizeof name, "%s.g_pack", sym);
  LLVMValueRef fpack = LLVMGetNamedFunction(mod, name);
  snprintf(name, sizeof name, "%s.g_rows", sym);
  LLVMValueRef frows = LLVMGetNamedFunction(mod, name);
  g.sym = sym;
  LLVMValueRef P[4];

  LLVMTypeRef pt[4] = {ir->ptr, ir->ptr, ir->ptr, ir->ptr};
  LLVMGetParams(newfn(&g, "_pack", pt, 2, 0, "B pack"), P);
  LLVMValueRef pargs[4] = {P[0], P[1], irb_i64(ir, 0), irb_i64(ir, g.np)};
  call(&g, fpack, pargs, 4);
  LLVMBuildRetVoid(ir->b);

  LLVMGetParams(newfn(&g, "_packed", pt, 3, 0, "A pack C"), P);
  LLVMValueRef rargs[6] = {
      P[0], P[1], P[2], irb_i64(ir, 0), irb_i64(ir, M), irb_gep(ir, P[1], irb_i64(ir, bpanels(N, K)))};
  call(&g, frows, rargs, 6);
  LLVMBuildRetVoid(ir->b);

  LLVMGetParams(newfn(&g, "", pt, 4, 0, "A B C pack"), P);
  LLVMValueRef a1[4] = {P[1], P[3], irb_i64(ir, 0), irb_i64(ir, g.np)};
  call(&g, fpack, a1, 4);
  LLVMValueRef a2[6] = {
      P[0], P[3], P[2], irb_i64(ir, 0), irb_i64(ir, M), irb_gep(ir, P[3], irb_i64(ir, bpanels(N, K)))};
  call(&g, frows, a2, 6);
  LLVMBuildRetVoid(ir->b);
  irb_free(ir);
  return RNNC_OK;
}

/* rnnc_ops.h — the one table of cell-level primitive ops. The public
 * RNNC_OP_* constants (rnnc.h) and the internal OP_* (ir/ir.h) are both
 * generated from it.
 *
 * OP(id, spelling, arity, shape rule, infix precedence, scalar eval)
 *
 *   spelling   how the parser reads it and the printer writes it: a function name
 *              (`tanh(x)`) or, where precedence > 0, a binary infix operator.
 *   arity      number of operands; -1 is variadic (at least one).
 *   shape rule one of the SH_* rules below (verify.c implements each once).
 *   precedence 0: written as a call; otherwise binds tighter as it grows
 *              (`+ -` 1, `* /` 2, `@` 3).
 *   eval       for elementwise ops (SH_EW), the value as a C expression of the
 *              operands `a` and `b` (double); 0 where not elementwise.
 *
 * The derivative of each op is one case of the switch in compiler/autodiff.c.
 * Adding an op touches this table and that one rule (and, for a non-elementwise
 * op, its kernel in ir/interp.c).
 *
 * Shape rules (the batch dimension is implicit; shapes are [] scalar, [n] vector,
 * [m, n] matrix):
 *   SH_LEAF    declared shape (input, state, param) or given (const: [], zeros: [d])
 *   SH_EW      operands of equal shape, or a scalar broadcast to the other's shape
 *   SH_MATVEC  [m, n] @ [n] -> [m]
 *   SH_MATVECT matvec_t([m, n], [m]) -> [n]        (transposed matrix times vector)
 *   SH_OUTER   outer([m], [n]) -> [m, n]
 *   SH_SPLIT   split([d], n)[k] -> [d/n]; every coefficient of d divisible by n
 *   SH_SLICE   slice([d], start, size) -> [size]
 *   SH_CONCAT  concat([d1], [d2], ...) -> [d1 + d2 + ...]
 */
#ifndef RNNC_OPS_H
#define RNNC_OPS_H
#define OPS(OP)                                                              \
  OP(INPUT,    "input",    0, SH_LEAF,    0, 0)                              \
  OP(STATE,    "state",    0, SH_LEAF,    0, 0)                              \
  OP(PARAM,    "param",    0, SH_LEAF,    0, 0)                              \
  OP(CONST,    "const",    0, SH_LEAF,    0, 0)                              \
  OP(ZEROS,    "zeros",    0, SH_LEAF,    0, 0)                              \
  OP(ADD,      "+",        2, SH_EW,      1, a + b)                          \
  OP(SUB,      "-",        2, SH_EW,      1, a - b)                          \
  OP(MUL,      "*",        2, SH_EW,      2, a * b)                          \
  OP(DIV,      "/",        2, SH_EW,      2, a / b)                          \
  OP(MATVEC,   "@",        2, SH_MATVEC,  3, 0)                              \
  OP(NEG,      "neg",      1, SH_EW,      0, -a)                             \
  OP(SIGMOID,  "sigmoid",  1, SH_EW,      0, 1.0 / (1.0 + exp(-a)))          \
  OP(TANH,     "tanh",     1, SH_EW,      0, tanh(a))                        \
  OP(RELU,     "relu",     1, SH_EW,      0, a > 0 ? a : 0.0)                \
  OP(STEP,     "step",     1, SH_EW,      0, a > 0 ? 1.0 : 0.0)              \
  OP(EXP,      "exp",      1, SH_EW,      0, exp(a))                         \
  OP(LOG,      "log",      1, SH_EW,      0, log(a))                         \
  OP(MATVECT,  "matvec_t", 2, SH_MATVECT, 0, 0)                              \
  OP(OUTER,    "outer",    2, SH_OUTER,   0, 0)                              \
  OP(SPLIT,    "split",    1, SH_SPLIT,   0, 0)                              \
  OP(SLICE,    "slice",    1, SH_SLICE,   0, 0)                              \
  OP(CONCAT,   "concat",  -1, SH_CONCAT,  0, 0)
#endif

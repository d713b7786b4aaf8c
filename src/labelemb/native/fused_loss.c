/* The label embedding loss (paper, eq. 14) for one CPU batch in a single call: the five terms,
 * their reduction, and the gradients w.r.t. the main logits z1, the auxiliary logits z2 and the
 * label-embedding logits e.
 *
 * Python side and the maths: labelemb/native/__init__.py; the readable definition that this
 * must equal: labelemb.functional.label_embedding_loss (backend="autograd"). On a small model
 * the term-by-term PyTorch code is ~100 tiny tensor operations, each costing more in dispatch
 * than its arithmetic; here the same arithmetic is two loops over the rows.
 *
 * Per valid target y (rows whose target is ignore_index add nothing), with p1 = softmax(z1),
 * p2 = softmax(z2), q = softmax(e), s = softmax(z2 / tau) and d the one-hot target:
 *   ce = -log p1_y                   d/dz1 = p1 - d
 *   soft_ce = -sum q log p1          d/dz1 = p1 - q            (q a constant)
 *   aux_ce = -log p2_y               d/dz2 = p2 - d
 *   aux_hinge = h(p2_y - alpha)      d/dz2 = h'(.) p2_y (d - p2)
 *   embedding_ce = -sum s log q      d/de  = q - s             (s a constant; rows where
 *                                                              argmax z2 == y if mask_wrong)
 * each gradient times the term's weight and 1 / its normaliser.
 *
 * fused_loss_body.h is included twice, for float and double. Sums over rows and classes are in
 * double either way.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Mirrors labelemb.native._Options (ctypes.Structure): keep the two in the same order. */
typedef struct {
    int64_t rows, classes, ignore_index;
    int32_t soft_on, has_aux, embedding_ce, mask_wrong, by_correct, hinge, hinge_mean, reduction,
        validate, e_by_target;
    double w_ce, w_soft, tau, alpha;
    int64_t ld1, ld2; /* row strides of z1 and z2 in elements (>= classes): rows of a wider
                         matrix, such as both halves of a LabelEmbeddingHead's output, are read
                         where they lie */
} le_options;

enum { LE_MEAN = 0, LE_SUM = 1, LE_NONE = 2 };
enum { LE_L1 = 0, LE_L2 = 1, LE_ABS = 2 };
/* Return codes: the Python side turns them into the same errors as the autograd path. */
enum { LE_OK = 0, LE_BAD_TARGET = 1, LE_BAD_LOGITS = 2, LE_BAD_AUX = 3, LE_NO_MEMORY = 4 };

#define LE_REAL float
#define LE_NAME(x) x##_f32
#define LE_EXP expf
#include "fused_loss_body.h"
#undef LE_REAL
#undef LE_NAME
#undef LE_EXP

#define LE_REAL double
#define LE_NAME(x) x##_f64
#define LE_EXP exp
#include "fused_loss_body.h"

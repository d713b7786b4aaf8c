/* The body of fused_loss.c, included once per LE_REAL (float, double): see there. */


/* out = softmax(scale * x); returns logsumexp(scale * x). */
static double LE_NAME(softmax_row)(const LE_REAL *x, int64_t n, LE_REAL scale, LE_REAL *out) {
    LE_REAL m = x[0];
    for (int64_t c = 1; c < n; ++c) m = x[c] > m ? x[c] : m;
    double sum = 0.0;
    for (int64_t c = 0; c < n; ++c) {
        out[c] = LE_EXP(scale * (x[c] - m));
        sum += out[c];
    }
    const double inv = 1.0 / sum;
    for (int64_t c = 0; c < n; ++c) out[c] = (LE_REAL)(out[c] * inv);
    return (double)scale * m + log(sum);
}

static int LE_NAME(all_finite)(const LE_REAL *x, int64_t n) {
    for (int64_t k = 0; k < n; ++k)
        if (!isfinite(x[k])) return 0;
    return 1;
}

/* z2 and e may be NULL (no auxiliary head / no embedding needed); so may each gradient.
 * e holds one row of label-embedding logits per target (rows x classes), or with e_by_target
 * the whole classes x classes matrix E, row y read for target y, and then ge is E's gradient.
 * loss: 1 value, or `rows` with reduction none. terms: the computed terms in the order
 * ce, soft_ce, aux_ce, aux_hinge, embedding_ce (absent ones skipped), 1 value each or `rows`.
 * On a bad target or logit the return code says which (the caller names the value). */
int LE_NAME(le_loss)(const le_options *o, const int64_t *target, const LE_REAL *z1,
                     const LE_REAL *z2, const LE_REAL *e, LE_REAL *loss, LE_REAL *terms,
                     LE_REAL *g1, LE_REAL *g2, LE_REAL *ge) {
    const int64_t M = o->rows, C = o->classes;
    const int none = o->reduction == LE_NONE;
    const int need_e = o->soft_on || o->embedding_ce;
    const double w_soft = o->soft_on ? o->w_soft : 0.0;

    /* Pass 1: check targets (always: they index memory) and logits, count the normalisers,
     * and mark the rows whose embedding is fitted (argmax z2 == y, first maximum like torch). */
    unsigned char *fitted = malloc(M > 0 ? (size_t)M : 1);
    /* With a full embedding and fewer classes than rows, softmax(E[y]) is made once per label
     * (a C x C table plus C log-normalisers) instead of once per target. */
    const int q_table = o->e_by_target && need_e && C <= M && C * C <= (1 << 20);
    const size_t n_scratch = (size_t)(4 * C) + (q_table ? (size_t)(C * C) : 0);
    LE_REAL *scratch = malloc(sizeof(LE_REAL) * n_scratch);
    double *lse_all = q_table ? malloc(sizeof(double) * (size_t)C) : NULL;
    if (!fitted || !scratch || (q_table && !lse_all)) {
        free(fitted);
        free(scratch);
        free(lse_all);
        return LE_NO_MEMORY;
    }
    int code = LE_OK;
    int64_t n_valid = 0, n_fitted = 0;
    for (int64_t i = 0; i < M; ++i) {
        const int64_t y = target[i];
        fitted[i] = 0;
        if (o->validate && !LE_NAME(all_finite)(z1 + i * o->ld1, C)) {
            code = LE_BAD_LOGITS;
            break;
        }
        if (o->validate && z2 && !LE_NAME(all_finite)(z2 + i * o->ld2, C)) {
            code = LE_BAD_AUX;
            break;
        }
        if (y == o->ignore_index) continue;
        if (y < 0 || y >= C) {
            code = LE_BAD_TARGET;
            break;
        }
        ++n_valid;
        if (o->embedding_ce) {
            int is_fitted = 1;
            if (o->mask_wrong) {
                const LE_REAL *r = z2 + i * o->ld2;
                int64_t best = 0;
                for (int64_t c = 1; c < C; ++c)
                    if (r[c] > r[best] || (isnan(r[c]) && !isnan(r[best]))) best = c;
                is_fitted = best == y;
            }
            fitted[i] = (unsigned char)is_fitted;
            n_fitted += is_fitted;
        }
    }
    if (code != LE_OK) {
        free(fitted);
        free(scratch);
        free(lse_all);
        return code;
    }

    /* Each term's share of the loss per target: 1 / normaliser (1 for sum and none). */
    double a_main = 1.0, a_hinge = 1.0, a_emb = 1.0;
    if (o->reduction == LE_MEAN) {
        a_main = 1.0 / (double)(n_valid > 0 ? n_valid : 1);
        a_hinge = o->hinge_mean ? a_main : 1.0;
        /* the authors' 1 / (n_correct + 1e-8) as float32 sees it (the sum is 0 when n is) */
        a_emb = o->by_correct ? (n_fitted > 0 ? 1.0 / (double)n_fitted : 1e8) : a_main;
    }
    const int n_terms = 1 + (o->soft_on != 0) + (o->has_aux ? 2 + (o->embedding_ce != 0) : 0);
    const int t_soft = 1, t_aux = 1 + (o->soft_on != 0), t_hinge = t_aux + 1, t_emb = t_aux + 2;
    /* each term's weight in the loss, and the share 1 / normaliser of its sum */
    double weight[5] = {o->w_ce, 1.0, 1.0, 1.0, 1.0}, scale[5] = {a_main, a_main, a_main, a_main, a_main};
    if (o->soft_on) weight[t_soft] = w_soft;
    if (o->has_aux) {
        scale[t_hinge] = a_hinge;
        if (o->embedding_ce) scale[t_emb] = a_emb;
    }
    double sums[5] = {0.0, 0.0, 0.0, 0.0, 0.0};

    LE_REAL *p1 = scratch, *q = scratch + C, *p2 = scratch + 2 * C, *s = scratch + 3 * C;
    LE_REAL *q_all = scratch + 4 * C;
    if (q_table)
        for (int64_t k = 0; k < C; ++k) lse_all[k] = LE_NAME(softmax_row)(e + k * C, C, 1, q_all + k * C);
    if (ge && o->e_by_target) memset(ge, 0, sizeof(LE_REAL) * (size_t)(C * C));
    /* Pass 2: the terms and gradients, row by row. */
    for (int64_t i = 0; i < M; ++i) {
        const int64_t y = target[i];
        const int64_t off = i * C;
        double row[5] = {0.0, 0.0, 0.0, 0.0, 0.0};
        /* where row i's label-embedding logits and their gradient live */
        const int64_t e_off = o->e_by_target ? y * C : off;
        if (y == o->ignore_index) {
            for (int64_t c = 0; c < C; ++c) {
                if (g1) g1[off + c] = 0;
                if (g2) g2[off + c] = 0;
                if (ge && !o->e_by_target) ge[off + c] = 0;
            }
        } else {
            const LE_REAL *x1 = z1 + i * o->ld1;
            const double lse1 = LE_NAME(softmax_row)(x1, C, 1, p1);
            row[0] = lse1 - x1[y];

            double lse_e = 0.0;
            if (q_table) {
                q = q_all + y * C;
                lse_e = lse_all[y];
            } else if (need_e) {
                lse_e = LE_NAME(softmax_row)(e + e_off, C, 1, q);
            }
            if (o->soft_on) {
                double acc = 0.0; /* sum q log p1 */
                for (int64_t c = 0; c < C; ++c) acc += (double)q[c] * ((double)x1[c] - lse1);
                row[t_soft] = -acc;
            }
            if (g1) {
                const double k = a_main, wm = o->w_ce + w_soft;
                LE_REAL *g = g1 + off;
                if (o->soft_on)
                    for (int64_t c = 0; c < C; ++c) g[c] = (LE_REAL)(k * (wm * p1[c] - w_soft * q[c]));
                else
                    for (int64_t c = 0; c < C; ++c) g[c] = (LE_REAL)(k * wm * p1[c]);
                g[y] = (LE_REAL)(g[y] - k * o->w_ce);
            }

            if (o->has_aux) {
                const LE_REAL *x2 = z2 + i * o->ld2;
                const double aux_ce = LE_NAME(softmax_row)(x2, C, 1, p2) - x2[y];
                const double p2y = exp(-aux_ce);
                const double gap = p2y - o->alpha;
                double hinge, slope; /* the hinge and its derivative in p2_y (0 at the kink) */
                if (o->hinge == LE_L1) {
                    hinge = gap > 0 ? gap : 0.0;
                    slope = gap > 0 ? 1.0 : 0.0;
                } else if (o->hinge == LE_L2) {
                    hinge = gap > 0 ? gap * gap : 0.0;
                    slope = gap > 0 ? 2.0 * gap : 0.0;
                } else {
                    hinge = fabs(gap);
                    slope = gap > 0 ? 1.0 : (gap < 0 ? -1.0 : 0.0);
                }
                row[t_aux] = aux_ce;
                row[t_hinge] = hinge;
                if (g2) {
                    const double k = a_main - a_hinge * slope * p2y;
                    LE_REAL *g = g2 + off;
                    for (int64_t c = 0; c < C; ++c) g[c] = (LE_REAL)(k * p2[c]);
                    g[y] = (LE_REAL)(g[y] - k);
                }
                if (o->embedding_ce && fitted[i]) {
                    if (o->tau == 2.0) {
                        /* softmax(z2 / 2) = normalised sqrt(softmax(z2)): a square root per
                         * class instead of an exp (tau = 2 in both of the authors' presets) */
                        double sum_s = 0.0;
                        for (int64_t c = 0; c < C; ++c) sum_s += (s[c] = (LE_REAL)sqrt((double)p2[c]));
                        const double inv = 1.0 / sum_s;
                        for (int64_t c = 0; c < C; ++c) s[c] = (LE_REAL)(s[c] * inv);
                    } else {
                        LE_NAME(softmax_row)(x2, C, (LE_REAL)(1.0 / o->tau), s);
                    }
                    double acc = 0.0; /* sum s log q */
                    for (int64_t c = 0; c < C; ++c) acc += (double)s[c] * ((double)e[e_off + c] - lse_e);
                    row[t_emb] = -acc;
                    if (ge) {
                        /* with e_by_target, E's rows add up over the targets sharing a label */
                        LE_REAL *g = ge + e_off;
                        const int add = o->e_by_target;
                        for (int64_t c = 0; c < C; ++c) {
                            const LE_REAL v = (LE_REAL)(a_emb * ((double)q[c] - (double)s[c]));
                            g[c] = add ? g[c] + v : v;
                        }
                    }
                } else if (ge && !o->e_by_target) {
                    for (int64_t c = 0; c < C; ++c) ge[off + c] = 0;
                }
            }
        }
        for (int k = 0; k < n_terms; ++k) sums[k] += row[k];
        if (none) {
            double total = 0.0;
            for (int k = 0; k < n_terms; ++k) {
                total += weight[k] * row[k];
                terms[k * M + i] = (LE_REAL)row[k];
            }
            loss[i] = (LE_REAL)total;
        }
    }
    if (!none) {
        double total = 0.0;
        for (int k = 0; k < n_terms; ++k) {
            const double v = sums[k] * scale[k];
            terms[k] = (LE_REAL)v;
            total += weight[k] * v;
        }
        loss[0] = (LE_REAL)total;
    }
    free(fitted);
    free(scratch);
    free(lse_all);
    return LE_OK;
}

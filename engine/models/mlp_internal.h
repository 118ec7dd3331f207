/* Internals of the MLP model (models/mlp.c) exposed for the unit tests only:
 * the batch loss and its gradient, and the parameter vector, so a test can
 * check backpropagation against finite differences. Nothing outside
 * tests/c may include this header. */
#ifndef ONEARM_MODELS_MLP_INTERNAL_H
#define ONEARM_MODELS_MLP_INTERNAL_H

#include <stddef.h>

#include "models/model.h"

/* Loss of the network on n rows x (n x dim) with targets y, averaged over
 * the rows, plus the l2 penalty 0.5 * l2 * sum(W^2) over the weight
 * matrices (not the biases): BCE on the sigmoid output, or 0.5 * squared
 * error for a linear output. When grad is non-NULL it receives the gradient
 * with respect to every parameter, laid out like oa__mlp_params. n must not
 * exceed the model's scratch rows (max(batch, 256)). The model's learned
 * state is unchanged (only scratch buffers are used). */
int oa__mlp_loss_grad(oa_model *m, const double *x, const double *y, int n, double *loss,
                      float *grad, oa_error *err);

/* The parameter vector (layer by layer: weights out x in row-major, then
 * biases), borrowed from the model; *n receives its length. Writing to it
 * changes the model (tests perturb it for finite differences). */
float *oa__mlp_params(oa_model *m, size_t *n);

#endif

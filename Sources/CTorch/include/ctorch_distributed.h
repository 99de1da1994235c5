/*
 * ctorch_distributed.h — PyTorch's c10d process groups for data-parallel training.
 *
 * Rendezvous goes through a c10d::TCPStore that rank 0 hosts at host:port (torchrun's MASTER_ADDR and
 * MASTER_PORT); collectives run on Gloo over TCP for CPU tensors, or on NCCL for CUDA tensors when CTorch is
 * built against a CUDA libtorch with USE_C10D_NCCL. Every call blocks until its collective has finished or
 * `timeout_ms` (given at creation) has passed; a peer that died or never arrived is an error value, never a
 * hang. The error conventions are ctorch.h's.
 */
#ifndef SHATTER_CTORCH_DISTRIBUTED_H
#define SHATTER_CTORCH_DISTRIBUTED_H

#include <stdbool.h>
#include <stdint.h>

#include "ctorch.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ct_process_group_s *ct_process_group;

/* Which backends this build has: "gloo", "nccl", separated by commas ("" for none). */
const char *ct_distributed_backends(void);

/* Joins the group of `world_size` ranks as `rank`, on backend "gloo" or "nccl". Rank 0 listens on
 * host:port; the others connect to it. NULL on failure (the others not arriving within the timeout, a
 * backend this build lacks, a port in use). */
ct_process_group ct_process_group_new(const char *backend, const char *host, int port, int rank, int world_size,
                                      int64_t timeout_ms);
void ct_process_group_free(ct_process_group pg);

/* Sums each tensor over all ranks, in place (all are started, then all are waited for). */
int ct_all_reduce_sum(ct_process_group pg, ct_tensor *tensors, int count);
/* Copies each tensor from `root` to every rank, in place. */
int ct_broadcast(ct_process_group pg, ct_tensor *tensors, int count, int root);
/* Returns once every rank has called it. */
int ct_barrier(ct_process_group pg);

#ifdef __cplusplus
}
#endif
#endif

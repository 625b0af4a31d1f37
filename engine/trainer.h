/* The trainer: runs the phases of a configuration (DESIGN §7) on one process, with periodic evaluation, atomic
 * checkpoints in run.out_dir and bit-exact resume on the CPU backend. */
#ifndef DRL_TRAINER_H
#define DRL_TRAINER_H

#include <stdint.h>

#include "distributed/comm.h"
#include "engine/config.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct drl_train_summary {
  int64_t steps;            /* optimizer steps taken by this call */
  double final_loss;        /* training loss of the last step */
  double eval_before;       /* held-out exact-match accuracy before training (-1: not evaluated) */
  double eval_after_sft;    /* after the sft phase when more phases follow (-1: not evaluated) */
  double eval_after;        /* and after training */
  double seconds;           /* wall time of the training loop */
  double tokens_per_second; /* training tokens (batch rows x length) per second */
  int resumed_from;         /* step the run resumed from, 0 for a fresh run */
  int stopped_at;           /* step at which trainer.stop_after ended this call (checkpointed), 0 otherwise */
  int flow;                 /* the flow policy ran: the evaluations are mean ODE-sample rewards, not exact match */
} drl_train_summary;

/* Trains as cfg says: builds or loads the data, creates the model, resumes from run.out_dir/ckpt.h5 when
 * trainer.resume is set and the file exists, runs each phase, evaluates and checkpoints. With comm (the ranks of a
 * job; NULL: this process alone) every rank calls it: the batches are split into shards over the ranks, rank 0
 * writes the files and prints. */
drl_status drl_train(const drl_config *cfg, drl_comm *comm, drl_train_summary *summary);

#ifdef __cplusplus
}
#endif
#endif /* DRL_TRAINER_H */

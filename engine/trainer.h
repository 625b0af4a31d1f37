/* The trainer: runs the phases of a configuration (DESIGN §7) one after the other through the phase loop
 * (engine/phase.h), with evaluation before, between and after them, atomic checkpoints in run.out_dir and bit-exact
 * resume on the CPU backend. */
#ifndef DRL_TRAINER_H
#define DRL_TRAINER_H

#include <stdint.h>

#include "distributed/comm.h"
#include "engine/config.h"
#include "engine/phase.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Trains as cfg says: builds or loads the data, creates the model, resumes from run.out_dir/ckpt.h5 when
 * trainer.resume is set and the file exists, runs each phase, evaluates and checkpoints. With comm (the ranks of a
 * job; NULL: this process alone) every rank calls it: the batches are split into shards over the ranks, rank 0
 * writes the files and prints. */
drl_status drl_train(const drl_config *cfg, drl_comm *comm, drl_train_summary *summary);

#ifdef __cplusplus
}
#endif
#endif /* DRL_TRAINER_H */

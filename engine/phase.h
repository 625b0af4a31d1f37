/* The one phase loop (DESIGN §7): every phase of every policy runs its steps through drl_phase_run, which owns the
 * progress line, the metrics row of each step, evaluation and checkpoint cadence, skipped (non-finite) steps and
 * trainer.stop_after. A phase supplies one step function (engine/phase_*.c); engine/trainer.c chains the phases. */
#ifndef DRL_PHASE_H
#define DRL_PHASE_H

#include <stdint.h>

#include "data/metrics.h"
#include "engine/log.h"
#include "engine/run.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One phase as this call ran it. */
typedef struct drl_phase_summary {
  drl_cfg_phase phase;
  int64_t steps;  /* steps run by this call */
  double seconds; /* their wall time, evaluations and checkpoints included */
  double tokens;  /* sft: the examples' tokens trained on (padding not counted); grpo: the tokens generated */
  double eval;    /* the evaluation after its last step (-1: none, or the phase did not reach its end) */
} drl_phase_summary;

/* What drl_train reports. */
typedef struct drl_train_summary {
  int64_t steps;            /* optimizer steps taken by this call */
  double final_loss;        /* training loss of the last step */
  double eval_before;       /* the policy's evaluation before training (-1: not evaluated, as after a resume) */
  double eval_after;        /* and after training (-1: not reached) */
  double seconds;           /* wall time of the training loop */
  drl_phase_summary phases[DRL_CFG_COUNT_phase]; /* the phases this call ran, in order */
  int n_phases;
  int resumed_from;         /* step the run resumed from, 0 for a fresh run */
  int stopped_at;           /* step at which trainer.stop_after ended this call (checkpointed), 0 otherwise */
  int flow;                 /* the flow policy ran: the evaluations are mean ODE-sample rewards, not exact match */
} drl_train_summary;

/* Every metric any phase reports, one metrics row per optimizer step (sft, flow_pretrain) or iteration; the file of
 * a run holds its policy's columns, and a metric a phase does not produce is NaN. */
typedef enum drl_metric {
  DRL_M_PHASE, DRL_M_LOSS, DRL_M_LR, DRL_M_GRAD_NORM, DRL_M_TOKENS_PER_S, DRL_M_EVAL_ACCURACY, DRL_M_EVAL_REWARD,
  DRL_M_REWARD_MEAN, DRL_M_REWARD_STD, DRL_M_KEPT_SAMPLES, DRL_M_KEPT_TOKENS, DRL_M_LOSS_TOKENS, DRL_M_USEFULNESS,
  DRL_M_CLIP_FRAC, DRL_M_KL, DRL_M_ENTROPY, DRL_M_RESPONSE_LEN, DRL_M_PROJECTED_GRAD, DRL_M_PAYLOAD_BYTES,
  DRL_M_NFE, DRL_M_NFE_TOTAL, DRL_M_WINDOW, DRL_M_RATIO_MAX_DEV, DRL_M_RL_LOSS, DRL_M_SFT_LOSS, DRL_M_STEP_SECONDS,
  DRL_M_HELDOUT_LOSS, DRL_M_MOE_MAXVIO_BATCH, DRL_M_MOE_MAXVIO_GLOBAL, DRL_M_MOE_AUX_LOSS, DRL_M_BAD_STEPS,
  DRL_M_COUNT
} drl_metric;

/* The trainer's state across phases. */
typedef struct drl_trainer {
  drl_run run;
  const drl_config *cfg;
  int writes;             /* this rank writes the metrics file (rank 0) */
  drl_metrics metrics;
  drl_log_progress progress;
  int64_t phase_offset;   /* global step of the current phase's step 0 (metrics rows, random streams) */
  int last_phase;         /* the current phase is the last of trainer.phases */
  double t0, tokens;      /* this phase's wall clock and tokens (drl_phase_summary.tokens) */
  double phase_eval;      /* this phase's evaluation after its last step (-1: none yet) */
  /* The row: DRL_M_COUNT metrics, then per MoE block MaxVio_batch, MaxVio_global and each expert's load. The file
   * holds n_cols of them: column i is row[cols[i]], named names[i]. */
  double *row, *file_row;
  int *cols;
  char **names;
  int n_cols, n_row;
  double *heldout_counts; /* [L E] scratch of the held-out MaxVio */
  char last_ckpt[4200];   /* "path (phase step N)" of the last checkpoint written or resumed from; "" before */
} drl_trainer;

/* What a step tells the loop. */
typedef struct drl_phase_out {
  double loss;                   /* the step's training loss */
  char bad[DRL_TENSOR_NAME_CAP]; /* what was not finite ("loss" or a tensor) for a skipped step; "" otherwise */
  char text[200];                /* the progress line */
} drl_phase_out;

/* A phase: its step (1-based, of steps) fills the row's metrics and *out; state is the phase's own. */
typedef struct drl_phase {
  drl_cfg_phase phase;
  const char *label;     /* of the progress line */
  int steps;
  int eval_every;        /* evaluate every N steps (0: never) */
  int eval_last;         /* also evaluate after the last step, into its row */
  void *state;
  drl_status (*step)(drl_trainer *tr, void *state, int step, double *row, drl_phase_out *out);
  void (*close)(drl_trainer *tr, void *state); /* frees state */
} drl_phase;

/* Metrics columns of tr's policy, its row and scratch (after drl_run_open). */
drl_status drl_phase_columns(drl_trainer *tr);

/* Frees what drl_phase_columns made and closes the metrics file; safe on a zeroed trainer. */
void drl_phase_columns_free(drl_trainer *tr);

/* Runs ph's steps start + 1 .. ph->steps: per step the row, the step, the skipped-step count, evaluation, the
 * metrics row, the checkpoint and trainer.stop_after (summary->stopped_at). Closes ph. */
drl_status drl_phase_run(drl_trainer *tr, drl_phase *ph, int start, drl_train_summary *summary);

/* Evaluates the policy before training and logs it as the metrics row of global step 0 (phase: the first one). */
drl_status drl_phase_eval_before(drl_trainer *tr, double *value);

/* The phases' openers: each fills ph for phase `phase` resuming after step `start` (engine/phase_*.c). */
drl_status drl_phase_sft(drl_trainer *tr, int start, drl_phase *ph);
drl_status drl_phase_grpo(drl_trainer *tr, int start, drl_phase *ph);
drl_status drl_phase_spsa(drl_trainer *tr, drl_cfg_phase phase, int start, drl_phase *ph);
drl_status drl_phase_flow_pretrain(drl_trainer *tr, int start, drl_phase *ph);
drl_status drl_phase_flow_grpo(drl_trainer *tr, int start, drl_phase *ph);

#ifdef __cplusplus
}
#endif
#endif /* DRL_PHASE_H */

#define _POSIX_C_SOURCE 200809L
#include "trainer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data/checkpoint.h"
#include "engine/flow_policy.h"
#include "engine/log.h"
#include "engine/phase.h"

/* Steps (or iterations) a phase runs when uninterrupted. */
static int64_t phase_steps(const drl_config *cfg, drl_cfg_phase phase) {
  switch (phase) {
    case DRL_CFG_PHASE_SFT: return cfg->sft.steps;
    case DRL_CFG_PHASE_GRPO: return cfg->grpo.steps;
    case DRL_CFG_PHASE_FLOW_PRETRAIN: return cfg->flow.pretrain_steps;
    default: return cfg->tree.iterations;
  }
}

/* Opens phase `phase` of tr's run, resuming after step start. */
static drl_status open_phase(drl_trainer *tr, drl_cfg_phase phase, int start, drl_phase *ph) {
  if (tr->cfg->optim.name == DRL_CFG_OPTIM_SPSA) return drl_phase_spsa(tr, phase, start, ph);
  switch (phase) {
    case DRL_CFG_PHASE_SFT: return drl_phase_sft(tr, start, ph);
    case DRL_CFG_PHASE_GRPO: return drl_phase_grpo(tr, start, ph);
    case DRL_CFG_PHASE_FLOW_PRETRAIN: return drl_phase_flow_pretrain(tr, start, ph);
    default: return drl_phase_flow_grpo(tr, start, ph);
  }
}

/* Shards of every global batch: dist.shards, or one per rank. */
static int batch_shards(const drl_config *cfg, const drl_comm *comm) {
  return cfg->dist.shards > 0 ? cfg->dist.shards : (comm ? comm->size : 1);
}

/* SPSA gives every contribution a whole batch of its own; AdamW splits each batch into the shards. */
static int split_shards(const drl_config *cfg, const drl_comm *comm) {
  return cfg->optim.name == DRL_CFG_OPTIM_SPSA ? 1 : batch_shards(cfg, comm);
}

/* Rows the policy's activations must hold: a flow policy's largest call; a shard of an SFT batch, or a chunk of a
 * shard's GRPO rollouts (larger minibatches are accumulated chunk by chunk). */
static int batch_rows(const drl_config *cfg, int shards, int flow) {
  if (flow) return drl_flow_policy_rows(cfg);
  int rows = cfg->sft.batch_size / shards;
  for (int p = 0; p < cfg->trainer.phases.count; ++p)
    if (cfg->trainer.phases.items[p] == DRL_CFG_PHASE_GRPO) {
      int grpo = cfg->grpo.prompts_per_step / shards * cfg->grpo.group_size;
      grpo = grpo < 64 ? grpo : 64;
      rows = rows > grpo ? rows : grpo;
    }
  return rows > 0 ? rows : 1;
}

/* Validates cfg for a job of comm's ranks and opens the run with its metrics columns. */
static drl_status open_trainer(drl_trainer *tr, const drl_config *cfg, drl_comm *comm) {
  memset(tr, 0, sizeof *tr);
  tr->cfg = cfg;
  tr->writes = !comm || comm->rank == 0;
  int flow = 0;
  for (int p = 0; p < cfg->trainer.phases.count; ++p) flow |= drl_flow_policy_phase(cfg->trainer.phases.items[p]);
  int shards = split_shards(cfg, comm);
  /* before batch_rows, which reads the keys */
  DRL_TRY(drl_config_validate(cfg));
  DRL_TRY(drl_config_check_job(cfg, comm ? comm->size : 1));
  DRL_TRY(drl_run_open(&tr->run, cfg, comm, batch_rows(cfg, shards, flow)));
  return drl_phase_columns(tr);
}

static void describe(const drl_trainer *tr, const drl_comm *comm) {
  const drl_run *r = &tr->run;
  char dev[256];
  drl_device_describe(&r->dev, dev, sizeof dev);
  const char *auto_note = tr->cfg->run.device != DRL_CFG_DEVICE_AUTO ? ""
                          : r->dev.backend == DRL_BACKEND_CUDA    ? " (run.device auto: a GPU is visible)"
                                                                  : " (run.device auto: no GPU visible)";
  if (r->flow_policy) {
    drl_log(DRL_LOG_INFO, "dynrl: flow2d task (%d conditions x %d modes), velocity MLP of %lld parameters on %s%s",
            r->task.conditions, r->task.modes, (long long)r->ps->layout.total, dev, auto_note);
    return;
  }
  drl_log(DRL_LOG_INFO, "dynrl: %s task, %lld train / %lld held-out examples, %lld parameters on %s%s", r->data.task,
          (long long)r->n_train, (long long)r->n_eval, (long long)r->ps->layout.total, dev, auto_note);
  if (comm && comm->size > 1)
    drl_log(DRL_LOG_INFO, "data parallel: %d ranks, %d shards per batch%s, optimizer state %lld bytes per rank",
            comm->size, batch_shards(tr->cfg, comm), tr->cfg->dist.zero ? ", ZeRO-1" : "",
            (long long)(2 * (r->ps->optim_hi - r->ps->optim_lo) * (int64_t)sizeof(float)));
}

/* Resumes from run.out_dir/ckpt.h5 when trainer.resume is set and it exists (rank 0 decides): *phase_index and
 * *step say where; -1 and 0 for a fresh run. */
static drl_status resume(drl_trainer *tr, drl_comm *comm, int *phase_index, int *step) {
  const drl_config *cfg = tr->cfg;
  drl_run *r = &tr->run;
  *phase_index = -1;
  *step = 0;
  FILE *f = cfg->trainer.resume && tr->writes ? fopen(r->ckpt_path, "rb") : NULL;
  int32_t has_ckpt = f != NULL;
  if (f) fclose(f);
  if (comm && comm->size > 1) DRL_TRY(drl_comm_bcast(comm, &has_ckpt, sizeof has_ckpt, 0));
  if (!has_ckpt) return DRL_OK;
  char phase[DRL_PHASE_NAME_CAP];
  DRL_TRY(drl_run_resume(r, r->ckpt_path, phase, sizeof phase, step));
  for (int p = 0; p < cfg->trainer.phases.count; ++p)
    if (strcmp(drl_cfg_phase_name(cfg->trainer.phases.items[p]), phase) == 0) *phase_index = p;
  if (*phase_index < 0)
    return DRL_FAIL(DRL_ERR_CONFIG, "%s was written in phase '%s', which trainer.phases does not run", r->ckpt_path,
                    phase);
  snprintf(tr->last_ckpt, sizeof tr->last_ckpt, "%s (%s step %d)", r->ckpt_path, phase, *step);
  drl_log(DRL_LOG_INFO, "resumed %s at step %d from %s", phase, *step, r->ckpt_path);
  return DRL_OK;
}

/* Logs an evaluation of the policy (when it has one) at `when`. */
static void log_eval(const drl_trainer *tr, const char *when, double value) {
  if (tr->run.flow_policy)
    drl_log(DRL_LOG_INFO, "eval reward %s: %.4f", when, value);
  else if (value >= 0)
    drl_log(DRL_LOG_INFO, "held-out %s %s: %.3f", drl_run_eval_name(&tr->run), when, value);
}

/* After phase p: its evaluation (made after its last step, in its metrics row) logged; a flow phase's end state
 * also stays as run.out_dir/<phase>.h5, the "before" of the next. */
static drl_status after_phase(drl_trainer *tr, int p) {
  const drl_config *cfg = tr->cfg;
  drl_cfg_phase phase = cfg->trainer.phases.items[p];
  const char *name = drl_cfg_phase_name(phase);
  char when[128], path[4200];
  snprintf(when, sizeof when, "after %s", name);
  if (tr->run.flow_policy) {
    snprintf(path, sizeof path, "%s/%s.h5", cfg->run.out_dir, name);
    DRL_TRY(drl_run_save(&tr->run, path, name, (int)phase_steps(cfg, phase)));
    drl_log(DRL_LOG_INFO, "eval reward after %s: %.4f (%s)", name, tr->phase_eval, path);
  } else {
    log_eval(tr, when, tr->phase_eval);
  }
  return DRL_OK;
}

/* A run.out_dir that holds a run (its checkpoint or metrics) is continued with trainer.resume or started over with
 * trainer.force, never replaced silently (rank 0 looks; every rank returns the same). */
static drl_status check_out_dir(drl_trainer *tr, drl_comm *comm) {
  const drl_config *cfg = tr->cfg;
  char metrics[4200];
  snprintf(metrics, sizeof metrics, "%s/metrics.h5", cfg->run.out_dir);
  struct stat sb;
  int32_t used[2] = {0, 0}; /* ckpt.h5, metrics.h5 */
  if (tr->writes) {
    used[0] = stat(tr->run.ckpt_path, &sb) == 0;
    used[1] = stat(metrics, &sb) == 0;
  }
  if (comm && comm->size > 1) DRL_TRY(drl_comm_bcast(comm, used, sizeof used, 0));
  if (cfg->trainer.resume && !used[0])
    drl_log(DRL_LOG_WARN, "--resume: %s holds no checkpoint; starting a fresh run", cfg->run.out_dir);
  if ((used[0] || used[1]) && !cfg->trainer.resume && !cfg->trainer.force)
    return DRL_FAIL(DRL_ERR_CONFIG, "run.out_dir = %s already holds a run (%s): pass --resume to continue it, --force "
                    "to start over, or choose another run.out_dir", cfg->run.out_dir,
                    used[0] ? tr->run.ckpt_path : metrics);
  return DRL_OK;
}

drl_status drl_train(const drl_config *cfg, drl_comm *comm, drl_train_summary *sum) {
  memset(sum, 0, sizeof *sum);
  sum->eval_before = sum->eval_after = -1.0;
  drl_trainer tr;
  drl_run *r = &tr.run;
  drl_status st = open_trainer(&tr, cfg, comm);
  sum->flow = r->flow_policy;
  DRL_TRY_GOTO(st);
  describe(&tr, comm);
  DRL_TRY_GOTO(check_out_dir(&tr, comm));
  if (tr.writes) DRL_TRY_GOTO(drl_run_make_out_dir(r));
  int resume_phase, resume_step;
  DRL_TRY_GOTO(resume(&tr, comm, &resume_phase, &resume_step));
  sum->resumed_from = resume_step;
  int64_t offsets[DRL_CFG_COUNT_phase + 1] = {0};
  for (int p = 0; p < cfg->trainer.phases.count; ++p)
    offsets[p + 1] = offsets[p] + phase_steps(cfg, cfg->trainer.phases.items[p]);
  char metrics_path[4200];
  snprintf(metrics_path, sizeof metrics_path, "%s/metrics.h5", cfg->run.out_dir);
  if (tr.writes)
    DRL_TRY_GOTO(drl_metrics_open(&tr.metrics, metrics_path, (const char *const *)tr.names, tr.n_cols,
                                  resume_phase >= 0 ? offsets[resume_phase] + resume_step : -1, 10));
  if (tr.writes && tr.metrics.moved_to[0])
    drl_log(DRL_LOG_WARN, "%s held other metrics (another policy or version): moved to %s", metrics_path,
            tr.metrics.moved_to);
  if (resume_phase < 0 && cfg->trainer.init_from[0]) {
    DRL_TRY_GOTO(drl_run_load_weights(r, cfg->trainer.init_from));
    drl_log(DRL_LOG_INFO, "initialised the policy from %s", cfg->trainer.init_from);
  }
  if (resume_phase < 0) {
    DRL_TRY_GOTO(drl_phase_eval_before(&tr, &sum->eval_before));
    log_eval(&tr, "before training", sum->eval_before);
  }
  for (int p = resume_phase < 0 ? 0 : resume_phase; p < cfg->trainer.phases.count; ++p) {
    drl_phase ph;
    tr.phase_offset = offsets[p];
    tr.last_phase = p + 1 == cfg->trainer.phases.count;
    int start = p == resume_phase ? resume_step : 0;
    DRL_TRY_GOTO(open_phase(&tr, cfg->trainer.phases.items[p], start, &ph));
    DRL_TRY_GOTO(drl_phase_run(&tr, &ph, start, sum));
    if (sum->stopped_at) {
      drl_log(DRL_LOG_INFO, "stopped after step %d (trainer.stop_after); resume with --resume", sum->stopped_at);
      goto done;
    }
    DRL_TRY_GOTO(after_phase(&tr, p));
    sum->eval_after = tr.phase_eval;
  }
done:
  drl_phase_columns_free(&tr);
  drl_run_close(r);
  return st;
}

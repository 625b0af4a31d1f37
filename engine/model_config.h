/* The transformer config of a configuration's model section (and moe section, for model.ffn: moe). */
#ifndef DRL_MODEL_CONFIG_H
#define DRL_MODEL_CONFIG_H

#include "engine/config.h"
#include "models/transformer.h"

#ifdef __cplusplus
extern "C" {
#endif

/* *tc = cfg's policy with a vocabulary of vocab ids (model.vocab_size, when set, is the caller's to apply). */
void drl_model_config(const drl_config *cfg, int vocab, drl_transformer_config *tc);

#ifdef __cplusplus
}
#endif
#endif /* DRL_MODEL_CONFIG_H */

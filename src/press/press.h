/* press.h -- the policy framework (internal): method descriptors, parsed specs.
 *
 * A spec string names one or more stages joined by '+':
 *     spec  := stage ('+' stage)*
 *     stage := name [':' key '=' value (',' key '=' value)*]
 * e.g. "snapkv:ratio=0.5,window=32+kivi:bits=4". Every method has a descriptor
 * with its parameters (type, default from METHODS.md, range, help); parsing
 * validates names, keys, values and contradictions and says what is accepted.
 */
#ifndef LKV_PRESS_H
#define LKV_PRESS_H

#include "longkv.h"

#define LKV_PRESS_MAX_PARAMS 16
#define LKV_PRESS_MAX_STAGES 4

typedef enum lkv_press_ptype { LKV_PT_INT, LKV_PT_FLOAT, LKV_PT_ENUM } lkv_press_ptype;

/* A value that is "not set" (budget and ratio are alternatives). */
#define LKV_PRESS_UNSET (-1.0)

typedef struct lkv_press_param {
    const char *key;
    lkv_press_ptype type;
    double def;            /* default (LKV_PRESS_UNSET: optional, no default) */
    double lo, hi;         /* inclusive range for INT/FLOAT */
    const char *choices;   /* ENUM: "a|b|c"; the value stored is the index */
    const char *help;
} lkv_press_param;

/* What a stage does; a spec may hold at most one stage of each class. */
typedef enum lkv_press_class {
    LKV_PC_NONE = 0,       /* the full cache */
    LKV_PC_EVICT = 1,      /* deletes tokens (after prefill and/or while decoding) */
    LKV_PC_QUANT = 2,      /* changes page formats */
    LKV_PC_SELECT = 3      /* chooses pages per query; deletes nothing */
} lkv_press_class;

typedef struct lkv_press_method {
    const char *name;
    const char *summary;
    const char *source;    /* paper / reference */
    lkv_press_class cls;
    int implemented;       /* 0: known method, not in this build -> LKV_ERR_UNSUPPORTED */
    const lkv_press_param *params;
    int n_params;
} lkv_press_method;

typedef struct lkv_press_stage {
    const lkv_press_method *method;
    double value[LKV_PRESS_MAX_PARAMS];  /* resolved values (default or given) */
    unsigned char given[LKV_PRESS_MAX_PARAMS];
} lkv_press_stage;

struct lkv_press {
    int n_stages;
    lkv_press_stage stage[LKV_PRESS_MAX_STAGES];
    char canonical[512];   /* spec with every parameter spelled out */
};

/* The registry: every method longkv knows (implemented or not). */
const lkv_press_method *lkv_press_methods(int *count);
const lkv_press_method *lkv_press_find_method(const char *name);

/* Value of parameter `key` of a stage (asserts the key exists in the method). */
double lkv_press_stage_get(const lkv_press_stage *st, const char *key);
int lkv_press_stage_given(const lkv_press_stage *st, const char *key);

/* Parses and validates a spec into p (no allocation). Returns LKV_OK or
 * LKV_ERR_INVALID / LKV_ERR_UNSUPPORTED with a message. */
int lkv_press_parse(const char *spec, struct lkv_press *p);

#endif

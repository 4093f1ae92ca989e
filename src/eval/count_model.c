/* count_model.c -- the token counter of the generators over a loaded model's
 * tokenizer (the eval layer sits above the model layer). */
#include <stdint.h>

#include "longkv.h"

int lkv_count_tokens_model(void *model, const char *text, size_t len) {
    /* a one-id buffer: the call returns the full count whatever the capacity */
    int32_t first;
    return lkv_tokenize((const lkv_model *)model, text, len, 0, 0, &first, 1);
}

/* model_kv.c -- the one file between the forward pass and the KV cache.
 *
 * A context's K/V live in a paged, budgeted lkv_cache holding one sequence;
 * attention runs directly over its pages (lkv_seq_attend). Prompt snapshots
 * wrap the cache's sequence snapshot (src/kv/snapshot.c) with the tokens that
 * produced it, so a later run can check that its prompt starts the same way.
 *
 * PROMPT FILE FORMAT, version 2 (all integers little-endian; version 1, the
 * same without spec, question and logits and with a 40-byte header whose CRC
 * sits at 36, is still read as a full-cache file):
 *     0   8  magic "LKVPRMT\0"
 *     8   4  u32 version = 2
 *    12   4  u32 n_tokens
 *    16   8  u64 model_id of the model that wrote it
 *    24   8  u64 snapshot_size: bytes of the embedded sequence snapshot
 *    32   4  u32 CRC-32C of the tokens followed by the logits
 *    36   4  u32 spec_len S: bytes of the canonical spec of the policy that made
 *            the cache (lkv_press_canonical, no NUL); 0 = the full cache
 *    40   4  u32 n_question: the prompt step's question split (0 without a policy)
 *    44   4  u32 n_logits: 0, or n_vocab when the logits after the last token
 *            follow the tokens (files made with a policy)
 *    48   4  u32 CRC-32C of bytes [0, 48) followed by the spec
 *    52      spec [S]
 *    52+S    tokens [n_tokens] i32
 *            logits [n_logits] f32
 *            the sequence snapshot (its own format, checksums and trailer)
 * The file size must be exactly 52 + S + 4 n_tokens + 4 n_logits + snapshot_size.
 * The file is written to "<path>.tmp.<pid>" and renamed over path (atomic).
 *
 * A full-cache file serves any prompt sharing a prefix with its tokens. A file
 * made with a policy holds the cache the policy left after its prompt step,
 * which depends on the whole prompt: it is used only by a context with the
 * same canonical spec, for the identical tokens and question split, and then
 * restores every token and the logits, so the step is not run again. A file
 * of another policy (or of the full cache) is reported as a mismatch
 * (LKV_ERR_VERSION), never trusted.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/alloc.h"
#include "common/error.h"
#include "common/hash.h"
#include "model/model.h"

#define PROMPT_VERSION 2u
#define PROMPT_HDR 52
#define PROMPT_HDR_V1 40

static const char PROMPT_MAGIC[8] = {'L', 'K', 'V', 'P', 'R', 'M', 'T', 0};

struct lkv_model_kv {
    lkv_attn_params attn;
    lkv_cache *cache;
    lkv_seq *seq;
    uint64_t model_id;
    int n_layers, kv_heads;
    int *window; /* [n_layers] sliding window of each layer (0 = global) */
    lkv_model_press *press; /* the context's policy, or NULL (full cache) */
    const lkv_press *spec;  /* its parsed spec (not owned), or NULL */
};

/* A budget that holds n_ctx tokens of every (layer, head) with room to spare:
 * used when the caller sets none. The pool only reserves address space for it
 * (nothing is committed before use), so generosity costs nothing. */
static size_t default_budget(const lkv_model *m, const lkv_ctx_params *p, int page_tokens) {
    size_t d = (size_t)m->hp.head_dim, es = lkv_dtype_size(p->kv_dtype);
    if (es == 0 || es > 4)
        es = 2; /* packed formats are smaller than f16: f16 is a safe upper bound */
    size_t pt = (size_t)page_tokens;
    size_t page = pt * (2 * d * es + 4) + 2 * d * 4 + 256; /* K, V, pos, digest, header */
    page = (page + 63) / 64 * 64;
    size_t pages = ((size_t)p->n_ctx + pt - 1) / pt + 1;
    size_t lists = (size_t)m->hp.n_layers * (size_t)m->hp.n_kv_heads;
    return pages * lists * page / 4 * 5 + ((size_t)16 << 20);
}

int lkv_model_kv_create(const lkv_model *m, const lkv_ctx_params *p, lkv_model_kv **out) {
    lkv_model_kv *kv = lkv_calloc(1, sizeof *kv);
    if (!kv)
        LKV_FAIL(LKV_ERR_NOMEM, "model kv: out of memory");
    kv->attn = lkv_attn_default_params();
    kv->attn.head_dim = m->hp.head_dim;
    kv->attn.q_heads = m->hp.n_heads;
    kv->attn.kv_heads = m->hp.n_kv_heads;
    kv->attn.causal = 1;
    kv->attn.scale = m->hp.attn_scale; /* 0 = 1/sqrt(d) */
    kv->model_id = m->model_id;
    kv->n_layers = m->hp.n_layers;
    kv->kv_heads = m->hp.n_kv_heads;
    kv->window = lkv_calloc((size_t)m->hp.n_layers, sizeof *kv->window);
    if (!kv->window) {
        lkv_free(kv);
        LKV_FAIL(LKV_ERR_NOMEM, "model kv: out of memory");
    }
    for (int l = 0; l < m->hp.n_layers; l++)
        kv->window[l] = m->layers[l].window;
    lkv_cache_params cp = lkv_cache_default_params();
    cp.n_layers = m->hp.n_layers;
    cp.kv_heads = m->hp.n_kv_heads;
    cp.head_dim = m->hp.head_dim;
    cp.page_tokens = p->page_tokens; /* 0: the policy's page size, else the cache default */
    cp.dtype = p->kv_dtype;
    cp.model_id = m->model_id;
    cp.budget_bytes = p->kv_budget_bytes ? p->kv_budget_bytes
                                         : default_budget(m, p, cp.page_tokens > 0 ? cp.page_tokens : 16);
    int rc = LKV_OK;
    if (p->press && !lkv_press_is_full(p->press))
        rc = lkv_model_press_create(m, p->press, &cp, &kv->press);
    if (kv->press)
        kv->spec = p->press;
    if (cp.page_tokens == 0)
        cp.page_tokens = lkv_cache_default_params().page_tokens;
    if (rc == LKV_OK)
        rc = lkv_cache_create(&cp, &kv->cache);
    if (rc == LKV_OK)
        rc = lkv_seq_create(kv->cache, &kv->seq);
    if (rc < 0) {
        lkv_model_kv_free(kv);
        return rc;
    }
    *out = kv;
    return LKV_OK;
}

void lkv_model_kv_free(lkv_model_kv *kv) {
    if (!kv)
        return;
    lkv_model_press_free(kv->press);
    lkv_cache_free(kv->cache); /* frees the sequence too */
    lkv_free(kv->window);
    lkv_free(kv);
}

int lkv_model_kv_append(lkv_model_kv *kv, int layer, int n, const int32_t *pos,
                        const float *k, const float *v) {
    return lkv_seq_append(kv->seq, layer, n, pos, k, v);
}

int lkv_model_kv_attend(lkv_model_kv *kv, int layer, int n_q, const float *q,
                        const int32_t *q_pos, float *o, lkv_threadpool *tp) {
    lkv_attn_params ap = kv->attn;
    ap.window = kv->window[layer]; /* Gemma 3's local layers; 0 elsewhere */
    if (kv->press)
        return lkv_model_press_attend(kv->press, kv->seq, layer, &ap, n_q, q, q_pos, o, tp);
    return lkv_seq_attend(kv->seq, layer, &ap, n_q, q, q_pos, o, NULL, tp);
}

int lkv_model_kv_begin_prompt(lkv_model_kv *kv, int32_t pos0, int n, int n_question) {
    return kv->press ? lkv_model_press_begin_prompt(kv->press, pos0, n, n_question) : LKV_OK;
}

int lkv_model_kv_end_prompt(lkv_model_kv *kv, lkv_threadpool *tp) {
    return kv->press ? lkv_model_press_end_prompt(kv->press, kv->seq, tp) : LKV_OK;
}

void lkv_model_kv_abort_prompt(lkv_model_kv *kv) {
    if (kv->press)
        lkv_model_press_abort_prompt(kv->press);
}

int lkv_model_kv_after_decode(lkv_model_kv *kv, lkv_threadpool *tp) {
    return kv->press ? lkv_model_press_after_decode(kv->press, kv->seq, tp) : LKV_OK;
}

size_t lkv_model_kv_press_report(const lkv_model_kv *kv, char *buf, size_t cap) {
    if (buf && cap)
        buf[0] = '\0';
    return kv->press ? lkv_model_press_report(kv->press, buf, cap) : 0;
}

int lkv_model_kv_truncate(lkv_model_kv *kv, int n) {
    if (kv->press && n == 0)
        LKV_TRY(lkv_model_press_reset(kv->press)); /* a new stream: forget scores */
    return lkv_seq_truncate(kv->seq, n);
}

size_t lkv_model_kv_bytes(const lkv_model_kv *kv) {
    lkv_cache_stats st;
    if (lkv_cache_get_stats(kv->cache, &st) < 0)
        return 0;
    return st.committed;
}

/* ------------------------------------------------------------ prompt files */

static void put32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static void put64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static uint32_t get32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t get64(const uint8_t *p) {
    return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

/* The canonical spec prompt files record for this context ("" = full cache). */
static const char *kv_spec(const lkv_model_kv *kv) {
    return kv->press && kv->spec ? lkv_press_canonical(kv->spec) : "";
}

int lkv_model_kv_save(lkv_model_kv *kv, const char *path, const int32_t *tokens, int n,
                      const float *logits, int n_vocab) {
    int n_question = 0, n_logits = 0;
    if (kv->press) {
        LKV_TRY(lkv_model_press_check_snapshot(kv->press, n, &n_question));
        if (!logits || n_vocab < 1)
            LKV_FAIL(LKV_ERR_STATE, "prompt cache: no logits after the prompt to save");
        n_logits = n_vocab;
    }
    const char *spec = kv_spec(kv);
    const size_t S = strlen(spec);
    size_t snap = 0;
    LKV_TRY(lkv_seq_snapshot_size(kv->seq, n, &snap));
    size_t total = PROMPT_HDR + S + 4 * (size_t)n + 4 * (size_t)n_logits + snap;
    uint8_t *buf = lkv_malloc(total);
    if (!buf)
        LKV_FAIL(LKV_ERR_NOMEM, "prompt cache: out of memory for %zu bytes", total);
    memcpy(buf + PROMPT_HDR, spec, S);
    uint8_t *tok = buf + PROMPT_HDR + S;
    for (int i = 0; i < n; i++)
        put32(tok + 4 * (size_t)i, (uint32_t)tokens[i]);
    uint8_t *lg = tok + 4 * (size_t)n;
    for (int i = 0; i < n_logits; i++) {
        uint32_t u;
        memcpy(&u, &logits[i], 4);
        put32(lg + 4 * (size_t)i, u);
    }
    uint8_t *sn = lg + 4 * (size_t)n_logits;
    size_t written = 0;
    int rc = lkv_seq_save_mem(kv->seq, n, sn, snap, &written);
    if (rc < 0) {
        lkv_free(buf);
        return rc;
    }
    memcpy(buf, PROMPT_MAGIC, 8);
    put32(buf + 8, PROMPT_VERSION);
    put32(buf + 12, (uint32_t)n);
    put64(buf + 16, kv->model_id);
    put64(buf + 24, (uint64_t)written);
    put32(buf + 32, lkv_crc32c(0, tok, 4 * ((size_t)n + (size_t)n_logits)));
    put32(buf + 36, (uint32_t)S);
    put32(buf + 40, (uint32_t)n_question);
    put32(buf + 44, (uint32_t)n_logits);
    put32(buf + 48, lkv_crc32c(lkv_crc32c(0, buf, 48), buf + PROMPT_HDR, S));
    total = PROMPT_HDR + S + 4 * (size_t)n + 4 * (size_t)n_logits + written;

    char tmp[4200];
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp) {
        lkv_free(buf);
        LKV_FAIL(LKV_ERR_INVALID, "prompt cache: path too long");
    }
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        lkv_free(buf);
        LKV_FAIL(LKV_ERR_IO, "prompt cache: cannot create '%s': %s", tmp, strerror(errno));
    }
    int ok = fwrite(buf, 1, total, f) == total;
    ok = fflush(f) == 0 && ok;
    ok = fsync(fileno(f)) == 0 && ok;
    ok = fclose(f) == 0 && ok;
    lkv_free(buf);
    if (!ok || rename(tmp, path) != 0) {
        int e = errno;
        remove(tmp);
        LKV_FAIL(LKV_ERR_IO, "prompt cache: cannot write '%s': %s", path, strerror(e));
    }
    return LKV_OK;
}

/* Reads a whole file into an lkv_malloc'ed buffer. */
static int read_all(const char *path, uint8_t **out, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (errno == ENOENT)
            LKV_FAIL(LKV_ERR_NOT_FOUND, "prompt cache: '%s' does not exist", path);
        LKV_FAIL(LKV_ERR_IO, "prompt cache: cannot open '%s': %s", path, strerror(errno));
    }
    long len = -1;
    if (fseek(f, 0, SEEK_END) == 0)
        len = ftell(f);
    if (len < 0 || fseek(f, 0, SEEK_SET) != 0) {
        fclose(f);
        LKV_FAIL(LKV_ERR_IO, "prompt cache: cannot size '%s'", path);
    }
    uint8_t *buf = lkv_malloc((size_t)len + 1);
    if (!buf) {
        fclose(f);
        LKV_FAIL(LKV_ERR_NOMEM, "prompt cache: out of memory for %ld bytes", len);
    }
    size_t got = fread(buf, 1, (size_t)len, f);
    fclose(f);
    if (got != (size_t)len) {
        lkv_free(buf);
        LKV_FAIL(LKV_ERR_IO, "prompt cache: cannot read '%s'", path);
    }
    *out = buf;
    *size = (size_t)len;
    return LKV_OK;
}

/* A parsed prompt file (pointers into its buffer). */
typedef struct prompt_file {
    uint32_t n, n_question, n_logits;
    const char *spec;
    size_t spec_len;
    const uint8_t *tok, *logits, *snap;
    size_t snap_size;
} prompt_file;

/* Validates the wrapper (either version) and locates its parts. */
static int parse_prompt_file(const lkv_model_kv *kv, const uint8_t *buf, size_t size,
                             prompt_file *pf) {
    memset(pf, 0, sizeof *pf);
    if (size < PROMPT_HDR_V1 || memcmp(buf, PROMPT_MAGIC, 8) != 0)
        LKV_FAIL(LKV_ERR_FORMAT, "prompt cache: not a longkv prompt file");
    const uint32_t version = get32(buf + 8);
    size_t hdr = PROMPT_HDR_V1;
    if (version == 1) {
        if (get32(buf + 36) != lkv_crc32c(0, buf, 36))
            LKV_FAIL(LKV_ERR_FORMAT, "prompt cache: header checksum mismatch (corrupt file)");
    } else if (version == PROMPT_VERSION) {
        if (size < PROMPT_HDR)
            LKV_FAIL(LKV_ERR_FORMAT, "prompt cache: truncated header");
        pf->spec_len = get32(buf + 36);
        if (pf->spec_len > size - PROMPT_HDR ||
            get32(buf + 48) != lkv_crc32c(lkv_crc32c(0, buf, 48), buf + PROMPT_HDR, pf->spec_len))
            LKV_FAIL(LKV_ERR_FORMAT, "prompt cache: header checksum mismatch (corrupt file)");
        pf->n_question = get32(buf + 40);
        pf->n_logits = get32(buf + 44);
        hdr = PROMPT_HDR + pf->spec_len;
    } else {
        if (get32(buf + 36) != lkv_crc32c(0, buf, 36) &&
            (size < PROMPT_HDR || get32(buf + 48) != lkv_crc32c(0, buf, 48)))
            LKV_FAIL(LKV_ERR_FORMAT, "prompt cache: header checksum mismatch (corrupt file)");
        LKV_FAIL(LKV_ERR_VERSION, "prompt cache: format version %u (this build reads 1 and %u)",
                 version, PROMPT_VERSION);
    }
    pf->spec = (const char *)buf + PROMPT_HDR;
    if (get64(buf + 16) != kv->model_id)
        LKV_FAIL(LKV_ERR_VERSION, "prompt cache: written for another model");
    uint64_t n = get32(buf + 12), nl = pf->n_logits, ss = get64(buf + 24);
    if (n + nl > (size - hdr) / 4 || ss != size - hdr - 4 * (n + nl))
        LKV_FAIL(LKV_ERR_FORMAT, "prompt cache: sizes do not match the file (truncated?)");
    if (get32(buf + 32) != lkv_crc32c(0, buf + hdr, 4 * (size_t)(n + nl)))
        LKV_FAIL(LKV_ERR_FORMAT, "prompt cache: token checksum mismatch (corrupt file)");
    pf->n = (uint32_t)n;
    pf->tok = buf + hdr;
    pf->logits = pf->tok + 4 * (size_t)n;
    pf->snap = pf->logits + 4 * (size_t)nl;
    pf->snap_size = (size_t)ss;
    return LKV_OK;
}

/* Every list of a loaded sequence holds its tokens at positions < n_file
 * (all of 0..n_file-1 when full: ascending, n_file of them, the last n_file-1). */
static int check_loaded(const lkv_model_kv *kv, const lkv_seq *loaded, uint32_t n_file, int full) {
    for (int l = 0; l < kv->n_layers; l++)
        for (int h = 0; h < kv->kv_heads; h++) {
            int nt = lkv_seq_n_tokens(loaded, l, h);
            if (full ? nt != (int)n_file : (nt < 0 || nt > (int)n_file))
                LKV_FAIL(LKV_ERR_FORMAT,
                         "prompt cache: layer %d head %d holds %d tokens, the file lists %u", l, h,
                         nt, n_file);
            if (nt == 0)
                continue;
            int32_t last = -1;
            LKV_TRY(lkv_seq_get_positions(loaded, l, h, nt - 1, 1, &last));
            if (full ? last != (int32_t)n_file - 1 : last > (int32_t)n_file - 1)
                LKV_FAIL(LKV_ERR_FORMAT, "prompt cache: positions are not within 0..%u",
                         n_file - 1);
        }
    return LKV_OK;
}

int lkv_model_kv_load(lkv_model_kv *kv, const char *path, const int32_t *tokens, int n,
                      int n_question, float *logits, int n_vocab, int *n_loaded,
                      int *with_logits) {
    *n_loaded = 0;
    *with_logits = 0;
    if (lkv_seq_max_tokens(kv->seq, 0) != 0)
        LKV_FAIL(LKV_ERR_STATE, "prompt cache: the context is not empty");
    uint8_t *buf = NULL;
    size_t size = 0;
    LKV_TRY(read_all(path, &buf, &size));
    prompt_file pf;
    int rc = parse_prompt_file(kv, buf, size, &pf);
    const char *want = kv_spec(kv);
    const int policy = *want != 0;
    if (rc == LKV_OK && (pf.spec_len != strlen(want) || memcmp(pf.spec, want, pf.spec_len)))
        rc = lkv_set_error(LKV_ERR_VERSION, "prompt cache: made with %s%.*s%s, this context uses "
                           "%s%s%s", pf.spec_len ? "press '" : "the full cache",
                           (int)pf.spec_len, pf.spec, pf.spec_len ? "'" : "",
                           policy ? "press '" : "the full cache", want, policy ? "'" : "");
    /* the longest common prefix of the file's tokens and ours */
    int common = 0;
    if (rc == LKV_OK) {
        while (common < n && (uint32_t)common < pf.n &&
               (int32_t)get32(pf.tok + 4 * (size_t)common) == tokens[common])
            common++;
        if (common == 0)
            rc = lkv_set_error(LKV_ERR_RANGE,
                               "prompt cache: the saved prompt (%u tokens) and this one "
                               "differ from the first token",
                               pf.n);
        else if (policy && (common != n || pf.n != (uint32_t)n ||
                            pf.n_question != (uint32_t)n_question))
            rc = lkv_set_error(LKV_ERR_RANGE,
                               "prompt cache: a cache compressed by a policy depends on the "
                               "whole prompt; the file's (%u tokens, question %u) is not this "
                               "one (%d tokens, question %d)",
                               pf.n, pf.n_question, n, n_question);
        else if (policy && (pf.n_logits != (uint32_t)n_vocab || !logits))
            rc = lkv_set_error(LKV_ERR_FORMAT, "prompt cache: %u logits, the model has %d",
                               pf.n_logits, n_vocab);
    }
    lkv_seq *loaded = NULL;
    if (rc == LKV_OK)
        rc = lkv_seq_load_mem(kv->cache, pf.snap, pf.snap_size, &loaded);
    if (rc == LKV_OK)
        rc = check_loaded(kv, loaded, pf.n, !policy);
    if (rc == LKV_OK && policy) {
        for (uint32_t i = 0; i < pf.n_logits; i++) {
            uint32_t u = get32(pf.logits + 4 * (size_t)i);
            memcpy(&logits[i], &u, 4);
        }
        rc = lkv_model_press_restore(kv->press, loaded, n, n_question);
    } else if (rc == LKV_OK) {
        rc = lkv_seq_truncate(loaded, common);
    }
    lkv_free(buf);
    if (rc < 0) {
        lkv_seq_free(loaded);
        if (policy)
            lkv_model_press_reset(kv->press);
        return rc;
    }
    lkv_seq_free(kv->seq);
    kv->seq = loaded;
    *n_loaded = common;
    *with_logits = policy;
    return LKV_OK;
}

/* fuzz_tokenizer.c -- libFuzzer target for src/model/tokenizer.c.
 *
 * Input: one flag byte, then data.
 *   flags & 0x80 == 0   data is text: it is encoded (add_bos = flags & 1,
 *                       parse_special = flags & 2) with the real SmolLM2
 *                       vocabulary when models/ is found ($LONGKV_ROOT, . or ..),
 *                       with a synthetic byte-level BPE vocabulary (every byte
 *                       representable: decode(encode(x)) must equal x) and with
 *                       a synthetic SentencePiece vocabulary; the ids are decoded
 *                       again and the text is formatted as a chat.
 *   flags & 0x80        data is a vocabulary: lines are tokens (a line starting
 *                       with '!' is a control token, '?' a user-defined one),
 *                       lines with a space are also merges; flags & 0x40 picks
 *                       "llama" (scores = -line number) over "gpt2". The
 *                       tokenizer, if accepted, encodes the same data as text.
 * Invariant violations trap (__builtin_trap), so the fuzzer reports them.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "model/gguf.h"
#include "model/tokenizer.h"

static lkv_tokenizer *real_tok, *bpe_tok, *spm_tok;
static lkv_gguf *real_gguf;
static int inited;

static void load_real(void) {
    const char *root = getenv("LONGKV_ROOT");
    const char *roots[] = {root ? root : ".", ".", ".."};
    for (int i = 0; i < 3 && !real_tok; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/models/SmolLM2-135M-Instruct.Q4_1.gguf", roots[i]);
        FILE *f = fopen(path, "rb");
        if (!f)
            continue;
        fclose(f);
        if (lkv_gguf_open(path, &real_gguf) == 0 &&
            lkv_tokenizer_from_gguf(real_gguf, &real_tok) != 0) {
            lkv_gguf_close(real_gguf);
            real_gguf = NULL;
        }
    }
}

/* GPT-2 byte map, as UTF-8. */
static int byte_char(int b, char *out) {
    int n = 256, cp = b;
    int printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || b >= 0xae;
    if (!printable) {
        for (int c = 0; c < b; c++)
            n += !((c >= 0x21 && c <= 0x7e) || (c >= 0xa1 && c <= 0xac) || c >= 0xae);
        cp = n;
    }
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    out[0] = (char)(0xc0 | (cp >> 6));
    out[1] = (char)(0x80 | (cp & 0x3f));
    return 2;
}

static void load_synthetic(void) {
    static char bytes[256][2];
    static const char *merges[] = {"t h", "th e", "Ġ t", "Ġt he", "i n", "Ġ a", "a n", "an d",
                                   "Ġa nd", "1 2", "Ġ Ġ", "ĠĠ ĠĠ", "e r", "o n"};
    static const char *results[] = {"th", "the", "Ġt", "Ġthe", "in", "Ġa", "an", "and",
                                    "Ġand", "12", "ĠĠ", "ĠĠĠĠ", "er", "on"};
    enum { NM = sizeof merges / sizeof *merges, NV = 256 + 2 + NM };
    lkv_tok_str tok[NV], mer[NM];
    int32_t types[NV];
    for (int b = 0; b < 256; b++) {
        tok[b] = (lkv_tok_str){bytes[b], (size_t)byte_char(b, bytes[b])};
        types[b] = LKV_TOKEN_NORMAL;
    }
    tok[256] = (lkv_tok_str){"<|im_start|>", 12};
    types[256] = LKV_TOKEN_CONTROL;
    tok[257] = (lkv_tok_str){"<|im_end|>", 10};
    types[257] = LKV_TOKEN_CONTROL;
    for (int i = 0; i < NM; i++) {
        mer[i] = (lkv_tok_str){merges[i], strlen(merges[i])};
        tok[258 + i] = (lkv_tok_str){results[i], strlen(results[i])};
        types[258 + i] = LKV_TOKEN_NORMAL;
    }
    lkv_tokenizer_spec sp = lkv_tokenizer_default_spec();
    sp.model = "gpt2";
    sp.pre = "smollm";
    sp.n_vocab = NV;
    sp.tokens = tok;
    sp.types = types;
    sp.n_merges = NM;
    sp.merges = mer;
    sp.eos = 257;
    if (lkv_tokenizer_create(&sp, &bpe_tok) != 0)
        __builtin_trap();

    /* SentencePiece: <unk> <s> </s>, 256 byte tokens, a few pieces */
    static char names[256][7];
    static const char *pieces[] = {"\xe2\x96\x81", "\xe2\x96\x81the", "th", "he", "the",
                                   "\xe2\x96\x81t", "in", "<start_of_turn>", "<end_of_turn>"};
    enum { NP = sizeof pieces / sizeof *pieces, NS = 3 + 256 + NP };
    lkv_tok_str st[NS];
    int32_t sty[NS];
    float sc[NS];
    st[0] = (lkv_tok_str){"<unk>", 5};
    st[1] = (lkv_tok_str){"<s>", 3};
    st[2] = (lkv_tok_str){"</s>", 4};
    sty[0] = LKV_TOKEN_UNKNOWN;
    sty[1] = sty[2] = LKV_TOKEN_CONTROL;
    for (int b = 0; b < 256; b++) {
        snprintf(names[b], sizeof names[b], "<0x%02X>", b);
        st[3 + b] = (lkv_tok_str){names[b], 6};
        sty[3 + b] = LKV_TOKEN_BYTE;
    }
    for (int i = 0; i < NP; i++) {
        st[259 + i] = (lkv_tok_str){pieces[i], strlen(pieces[i])};
        sty[259 + i] = pieces[i][0] == '<' ? LKV_TOKEN_USER_DEFINED : LKV_TOKEN_NORMAL;
    }
    for (int i = 0; i < NS; i++)
        sc[i] = -(float)i;
    sp = lkv_tokenizer_default_spec();
    sp.model = "llama";
    sp.n_vocab = NS;
    sp.tokens = st;
    sp.types = sty;
    sp.scores = sc;
    sp.bos = 1;
    sp.eos = 2;
    sp.unk = 0;
    if (lkv_tokenizer_create(&sp, &spm_tok) != 0)
        __builtin_trap();
}

/* Encodes, decodes; with must_round_trip, decode(encode(x)) must be x. */
static void exercise(const lkv_tokenizer *t, const char *s, size_t n, int flags,
                     int must_round_trip) {
    int32_t *ids = NULL;
    int k = 0;
    int rc = lkv_tokenizer_encode(t, s, n, flags & 1, (flags >> 1) & 1, &ids, &k);
    if (rc != 0) {
        if (rc != LKV_ERR_NOMEM && rc != LKV_ERR_RANGE)
            __builtin_trap();
        return;
    }
    for (int i = 0; i < k; i++)
        if (ids[i] < 0 || ids[i] >= lkv_tokenizer_n_vocab(t))
            __builtin_trap();
    char *text = NULL;
    size_t len = 0;
    if (lkv_tokenizer_decode(t, ids, k, (flags >> 1) & 1, &text, &len) == 0) {
        if (must_round_trip && !(flags & 1) && (len != n || (n && memcmp(text, s, n))))
            __builtin_trap();
        lkv_free(text);
    }
    lkv_free(ids);
}

static void fuzz_vocab(const uint8_t *data, size_t size, int flags) {
    enum { MAXL = 512 };
    lkv_tok_str tok[MAXL], mer[MAXL];
    int32_t types[MAXL];
    float sc[MAXL];
    int nt = 0, nm = 0;
    size_t start = 0;
    for (size_t i = 0; i <= size && nt < MAXL; i++) {
        if (i < size && data[i] != '\n')
            continue;
        const char *line = (const char *)data + start;
        size_t len = i - start;
        start = i + 1;
        int ty = LKV_TOKEN_NORMAL;
        if (len && (line[0] == '!' || line[0] == '?')) {
            ty = line[0] == '!' ? LKV_TOKEN_CONTROL : LKV_TOKEN_USER_DEFINED;
            line++, len--;
        }
        tok[nt] = (lkv_tok_str){line, len};
        types[nt] = ty;
        sc[nt] = -(float)nt;
        nt++;
        if (memchr(line, ' ', len))
            mer[nm++] = (lkv_tok_str){line, len};
    }
    lkv_tokenizer_spec sp = lkv_tokenizer_default_spec();
    sp.model = (flags & 0x40) ? "llama" : "gpt2";
    sp.pre = (flags & 0x20) ? "default" : "smollm";
    sp.n_vocab = nt;
    sp.tokens = tok;
    sp.types = types;
    sp.scores = sc;
    sp.n_merges = nm;
    sp.merges = mer;
    sp.bos = flags & 0x0f;
    sp.eos = (flags >> 2) & 0x0f;
    sp.unk = 0;
    lkv_tokenizer *t = NULL;
    if (lkv_tokenizer_create(&sp, &t) != 0)
        return; /* rejecting a vocabulary is fine */
    exercise(t, (const char *)data, size, flags & 3, 0);
    lkv_tokenizer_free(t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!inited) {
        inited = 1;
        load_real();
        load_synthetic();
    }
    if (size == 0) {
        exercise(bpe_tok, "", 0, 3, 1);
        return 0;
    }
    int flags = data[0];
    const char *s = (const char *)data + 1;
    size_t n = size - 1;
    if (flags & 0x80) {
        fuzz_vocab(data + 1, n, flags);
        return 0;
    }
    if (real_tok)
        exercise(real_tok, s, n, flags, 0);
    exercise(bpe_tok, s, n, flags, 1);
    exercise(spm_tok, s, n, flags, 0);

    /* the text as a chat: first line = role, rest = content */
    char *copy = malloc(n + 1);
    if (!copy)
        return 0;
    memcpy(copy, s, n);
    copy[n] = 0;
    char *nl = strchr(copy, '\n');
    lkv_chat_msg m[2] = {{"user", copy}, {"assistant", "ok"}};
    if (nl) {
        *nl = 0;
        m[0].role = copy;
        m[0].content = nl + 1;
    }
    char *out = NULL;
    size_t len = 0;
    if (real_tok && lkv_tokenizer_chat_format(real_tok, m, 2, flags & 1, &out, &len) == 0)
        lkv_free(out);
    free(copy);
    return 0;
}

/* corpus.c -- prose for haystacks: load, normalise whitespace, split sentences.
 *
 * Normalised text: paragraphs joined by "\n\n", words inside a paragraph by one
 * space. Sentences index into that text, so a haystack is rebuilt from
 * (offset, length) pairs without copying the corpus.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "eval/eval.h"

struct lkv_corpus {
    char name[32];
    char *text;            /* normalised, NUL-terminated */
    size_t text_len;
    eval_sentence *sent;
    size_t n_sent;
};

#define MAX_SENTENCE_BYTES (1u << 20)

/* ------------------------------------------------------------ splitting */

static int is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }
static int is_lower(char c) { return c >= 'a' && c <= 'z'; }
static int is_upper(char c) { return c >= 'A' && c <= 'Z'; }
static int is_closer(char c) { return c == '"' || c == '\'' || c == ')' || c == ']'; }

/* Words after which a period does not end a sentence. */
static const char *const abbreviations[] = {
    "Mr", "Mrs", "Ms", "Messrs", "Dr", "St", "Sr", "Jr", "Col", "Capt", "Gen", "Lt",
    "Rev", "Hon", "Prof", "Mme", "Mlle", "No", "vs", "etc", "viz", "cf", "ch", "vol",
    "p", "pp", "e.g", "i.e",
};

/* The word that ends right before the '.' at text[dot]. */
static int ends_with_abbreviation(const char *text, size_t start, size_t dot) {
    size_t w = dot;
    while (w > start && !is_space(text[w - 1]) && text[w - 1] != '"' && text[w - 1] != '(' &&
           text[w - 1] != '\'')
        w--;
    size_t n = dot - w;
    if (n == 1 && is_upper(text[w]))
        return 1; /* an initial: "J. Smith" */
    for (size_t i = 0; i < sizeof abbreviations / sizeof *abbreviations; i++)
        if (strlen(abbreviations[i]) == n && memcmp(abbreviations[i], text + w, n) == 0)
            return 1;
    return 0;
}

static int push_sentence(eval_sentence **v, size_t *n, size_t *cap, size_t off, size_t len) {
    if (len > MAX_SENTENCE_BYTES)
        LKV_FAIL(LKV_ERR_FORMAT, "a sentence of %zu bytes (the limit is %u)", len,
                 MAX_SENTENCE_BYTES);
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 256;
        eval_sentence *p = lkv_realloc(*v, nc * sizeof *p);
        if (!p)
            LKV_FAIL(LKV_ERR_NOMEM, "out of memory splitting sentences");
        *v = p;
        *cap = nc;
    }
    (*v)[*n].off = off;
    (*v)[*n].len = (uint32_t)len;
    (*v)[*n].para_end = 0;
    (*n)++;
    return LKV_OK;
}

int eval_split_sentences(const char *text, size_t para_off, size_t para_len,
                         eval_sentence **v, size_t *n, size_t *cap) {
    size_t end = para_off + para_len;
    size_t start = para_off;
    size_t first = *n;
    for (size_t i = para_off; i < end; i++) {
        char c = text[i];
        if (c != '.' && c != '!' && c != '?')
            continue;
        size_t j = i + 1;
        while (j < end && (text[j] == '.' || text[j] == '!' || text[j] == '?'))
            j++; /* "...", "?!" */
        while (j < end && is_closer(text[j]))
            j++;
        if (j >= end || text[j] != ' ')
            continue; /* end of paragraph (handled below) or inside a token ("3.5") */
        if (j + 1 < end && is_lower(text[j + 1]))
            continue; /* '"Well?" said she.' goes on */
        if (c == '.' && j == i + 1 && ends_with_abbreviation(text, start, i))
            continue;
        LKV_TRY(push_sentence(v, n, cap, start, j - start));
        start = j + 1;
        i = j;
    }
    if (start < end)
        LKV_TRY(push_sentence(v, n, cap, start, end - start));
    if (*n > first)
        (*v)[*n - 1].para_end = 1;
    return LKV_OK;
}

/* ------------------------------------------------------------ building */

/* Normalises raw text into c->text and splits it. */
static int corpus_build(lkv_corpus *c, const char *raw, size_t raw_len) {
    c->text = lkv_malloc(raw_len + 1);
    if (!c->text)
        LKV_FAIL(LKV_ERR_NOMEM, "out of memory loading a corpus (%zu bytes)", raw_len);
    size_t cap = 0;
    size_t o = 0;
    size_t i = 0;
    while (i < raw_len) {
        /* skip whitespace; a blank line (two newlines) separates paragraphs */
        while (i < raw_len && (is_space(raw[i]) || raw[i] == '\0'))
            i++;
        if (i >= raw_len)
            break;
        if (o > 0) {
            c->text[o++] = '\n';
            c->text[o++] = '\n';
        }
        size_t para_off = o;
        int pending_space = 0;
        while (i < raw_len) {
            char ch = raw[i];
            if (ch == '\n') {
                /* a line break: paragraph ends if the next line is blank */
                size_t k = i + 1;
                while (k < raw_len && raw[k] != '\n' && is_space(raw[k]))
                    k++;
                if (k >= raw_len || raw[k] == '\n') {
                    i = k;
                    break;
                }
                pending_space = 1;
                i++;
                continue;
            }
            if (is_space(ch) || ch == '\0') {
                pending_space = 1;
                i++;
                continue;
            }
            if (pending_space && o > para_off)
                c->text[o++] = ' ';
            pending_space = 0;
            c->text[o++] = ch;
            i++;
        }
        /* o never exceeds raw_len: every output byte consumes an input byte
         * (a space or the two newlines stand for skipped whitespace). */
        if (o > para_off) {
            LKV_TRY(eval_split_sentences(c->text, para_off, o - para_off, &c->sent, &c->n_sent,
                                         &cap));
        } else if (para_off >= 2) {
            o = para_off - 2;
        }
    }
    c->text[o] = '\0';
    c->text_len = o;
    if (c->n_sent == 0)
        LKV_FAIL(LKV_ERR_FORMAT, "corpus \"%s\" has no sentence", c->name);
    return LKV_OK;
}

static void set_name(lkv_corpus *c, const char *name, size_t n) {
    if (n >= sizeof c->name)
        n = sizeof c->name - 1;
    memcpy(c->name, name, n);
    c->name[n] = '\0';
}

int lkv_corpus_from_text(const char *name, const char *text, size_t len, lkv_corpus **out) {
    if (!out)
        LKV_FAIL(LKV_ERR_INVALID, "lkv_corpus_from_text: out is NULL");
    *out = NULL;
    if (!text && len)
        LKV_FAIL(LKV_ERR_INVALID, "lkv_corpus_from_text: text is NULL");
    if (len >= SIZE_MAX / 2)
        LKV_FAIL(LKV_ERR_INVALID, "lkv_corpus_from_text: text too long");
    lkv_corpus *c = lkv_calloc(1, sizeof *c);
    if (!c)
        LKV_FAIL(LKV_ERR_NOMEM, "out of memory creating a corpus");
    if (!name)
        name = "text";
    set_name(c, name, strlen(name));
    int rc = corpus_build(c, text ? text : "", len);
    if (rc < 0) {
        lkv_corpus_free(c);
        return rc;
    }
    *out = c;
    return LKV_OK;
}

int lkv_corpus_load(const char *path, lkv_corpus **out) {
    if (!out || !path)
        LKV_FAIL(LKV_ERR_INVALID, "lkv_corpus_load: NULL argument");
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f)
        LKV_FAIL(LKV_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    lkv_sb raw = {0};
    char buf[1 << 16];
    size_t got;
    while ((got = fread(buf, 1, sizeof buf, f)) > 0)
        lkv_sb_append(&raw, buf, got);
    int read_error = ferror(f);
    fclose(f);
    if (read_error) {
        lkv_sb_free(&raw);
        LKV_FAIL(LKV_ERR_IO, "error reading %s", path);
    }
    if (raw.oom) {
        lkv_sb_free(&raw);
        LKV_FAIL(LKV_ERR_NOMEM, "out of memory reading %s", path);
    }
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    const char *dot = strrchr(base, '.');
    size_t name_len = dot && dot > base ? (size_t)(dot - base) : strlen(base);
    char name[32];
    if (name_len >= sizeof name)
        name_len = sizeof name - 1;
    memcpy(name, base, name_len);
    name[name_len] = '\0';
    int rc = lkv_corpus_from_text(name, raw.data ? raw.data : "", raw.len, out);
    lkv_sb_free(&raw);
    return rc;
}

/* Original paragraphs written for longkv (not taken from any book): enough
 * varied prose for tests and demos without the Debian texts. */
static const char builtin_text[] =
    "The village sat where the river bent twice before reaching the sea. Its houses were "
    "built of grey stone, and their roofs were patched with slate of every shade. In the "
    "mornings the baker opened his shutters before anyone else was awake. By noon the square "
    "was full of carts, dogs and people arguing about the price of wool.\n\n"
    "Mrs. Harrow kept the inn at the corner of the square. She was a tall woman with a loud "
    "laugh and a long memory. Travellers who paid their bills were welcome to return; those "
    "who did not were remembered by name for years. Her husband, Mr. Harrow, repaired clocks "
    "in a small room behind the kitchen.\n\n"
    "\"Will it rain tomorrow?\" asked the boy who carried water to the stables. The old "
    "shepherd looked at the sky for a long time before he answered. \"It will rain when the "
    "wind turns to the west, and not before.\" The boy nodded as if this settled the matter.\n\n"
    "Every spring the bridge needed repairs. The council met in the hall above the market and "
    "discussed the cost at great length. Some wanted to build a new bridge of iron; others said "
    "the old one had stood for two hundred years and would stand for two hundred more. In the "
    "end they voted, as they always did, to mend it once again.\n\n"
    "The schoolmaster was a quiet man who collected beetles. He kept them in glass cases along "
    "the walls of the classroom, each one labelled in careful handwriting. The children were "
    "afraid of him at first. Later they learned that he would forgive almost anything except "
    "a broken case.\n\n"
    "In the autumn the orchards turned red and gold. Families went out together to gather "
    "apples, and the air smelled of cider for weeks. At night the farmers sat by their fires "
    "and told the same stories they had told the year before. Nobody minded hearing them "
    "again.\n\n"
    "A letter arrived one winter morning for Dr. Ellis, the only physician in the valley. It "
    "came from the city and was sealed with green wax. He read it twice, folded it into his "
    "coat, and said nothing about it to anyone. Three days later he packed a trunk and took "
    "the coach to the coast.\n\n"
    "The lighthouse keeper rowed into town once a month for supplies. He bought flour, lamp "
    "oil, tea and a newspaper that was already a week old. He rarely spoke, but he always "
    "stopped to watch the children play by the fountain. Then he rowed home before the tide "
    "turned.\n\n"
    "When the snow came, the road over the hills was closed for many weeks. The village became "
    "a small island of its own. People visited their neighbours more often and borrowed what "
    "they lacked. By the time the thaw arrived, everyone knew a little more about everyone "
    "else than they had wished to know.\n\n"
    "The market clock had been wrong for as long as anyone could remember. It ran fast in "
    "summer and slow in winter, and on some days it stopped altogether. Visitors found this "
    "confusing. The villagers simply looked at the sun and went about their business.\n";

int lkv_corpus_builtin(lkv_corpus **out) {
    return lkv_corpus_from_text("builtin", builtin_text, sizeof builtin_text - 1, out);
}

void lkv_corpus_free(lkv_corpus *c) {
    if (!c)
        return;
    lkv_free(c->text);
    lkv_free(c->sent);
    lkv_free(c);
}

const char *lkv_corpus_name(const lkv_corpus *c) { return c ? c->name : ""; }

size_t lkv_corpus_n_sentences(const lkv_corpus *c) { return c ? c->n_sent : 0; }

int lkv_corpus_sentence(const lkv_corpus *c, size_t i, const char **text, size_t *len,
                        int *para_end) {
    if (!c || !text || !len)
        LKV_FAIL(LKV_ERR_INVALID, "lkv_corpus_sentence: NULL argument");
    if (i >= c->n_sent)
        LKV_FAIL(LKV_ERR_RANGE, "sentence %zu of %zu", i, c->n_sent);
    *text = c->text + c->sent[i].off;
    *len = c->sent[i].len;
    if (para_end)
        *para_end = c->sent[i].para_end;
    return LKV_OK;
}

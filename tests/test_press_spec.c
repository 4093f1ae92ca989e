/* test_press_spec.c -- policy spec parsing and validation: names, keys, ranges,
 * contradictions, composition, canonical form, unimplemented methods. */
#include <string.h>

#include "press/press.h"
#include "testutil.h"

/* valid spec: OK, or UNSUPPORTED while the method is not built yet */
static void valid(const char *spec) {
    lkv_press *p = NULL;
    int rc = lkv_press_create(spec, &p);
    CHECK(rc == LKV_OK || rc == LKV_ERR_UNSUPPORTED, "'%s' -> %d: %s", spec, rc, lkv_last_error());
    if (rc == LKV_ERR_UNSUPPORTED)
        CHECK(strstr(lkv_last_error(), "not implemented") != NULL, "message: %s", lkv_last_error());
    CHECK((rc == LKV_OK) == (p != NULL), "out set iff ok");
    lkv_press_free(p);
}

static void invalid(const char *spec, const char *needle) {
    lkv_press *p = (lkv_press *)1;
    int rc = lkv_press_create(spec, &p);
    CHECK(rc == LKV_ERR_INVALID, "'%s' should be invalid, got %d", spec, rc);
    CHECK(p == NULL, "out cleared on error");
    CHECK(strstr(lkv_last_error(), needle) != NULL, "'%s': message '%s' lacks '%s'", spec,
          lkv_last_error(), needle);
}

int main(void) {
    lkv_press *p = NULL;
    CHECK_OK(lkv_press_create("full", &p));
    CHECK(p && !strcmp(lkv_press_canonical(p), "full"), "canonical full: %s", lkv_press_canonical(p));
    CHECK(lkv_press_is_full(p), "is_full");
    lkv_press_free(p);
    CHECK_OK(lkv_press_create(" None ", &p));
    CHECK(p && lkv_press_is_full(p), "none is an alias of full");
    lkv_press_free(p);
    lkv_press_free(NULL);

    valid("snapkv:ratio=0.5");
    valid("snapkv:budget=1024,window=32,kernel=7");
    valid("snapkv:ratio=0.5+kivi:bits=4");
    valid("streamingllm:sinks=4,recent=252,positions=cache");
    valid("quest:budget=512");
    valid("arkvale");
    valid("kivi:bits=2,group=32,residual=128");

    invalid("", "empty");
    invalid("snapkvv", "unknown policy");
    invalid("snapkvv", "snapkv");           /* lists the known names */
    invalid("snapkv:windw=3", "accepted");  /* lists accepted keys */
    invalid("snapkv:windw=3", "window");
    invalid("snapkv:ratio=1.5", "out of range");
    invalid("snapkv:ratio=abc", "not a number");
    invalid("snapkv:window=3.5", "integer");
    invalid("snapkv:budget=100,ratio=0.5", "not both");
    invalid("snapkv:kernel=4", "odd");
    invalid("snapkv:budget=16,window=32", "exceed");
    invalid("snapkv:pool=median", "max|avg");
    invalid("snapkv:window", "key=value");
    invalid("snapkv:window=3,window=4", "twice");
    invalid("snapkv+h2o", "at most one");
    invalid("full+kivi", "cannot be combined");
    invalid("kivi:bits=3", "bits");
    invalid("kivi:residual=100", "multiple");
    invalid("streamingllm:budget=2,sinks=4", "exceed");
    invalid("streamingllm:recent=10,budget=100", "give one");
    invalid("arkvale:topk=200,page_budget=100", "exceeds");

    /* known-but-unbuilt methods are errors, never silent */
    p = (lkv_press *)1;
    CHECK(lkv_press_create("adakv:ratio=0.5", &p) == LKV_ERR_UNSUPPORTED && p == NULL,
          "adakv unsupported");
    CHECK(strstr(lkv_last_error(), "not implemented") != NULL, "msg %s", lkv_last_error());

    /* the internal parser resolves defaults and canonicalises */
    struct lkv_press raw;
    int rc = lkv_press_parse("SnapKV : budget = 1000 , pool = avg", &raw);
    CHECK(rc == LKV_OK || rc == LKV_ERR_UNSUPPORTED, "parse rc %d", rc);
    CHECK(raw.n_stages == 1 && lkv_press_stage_get(&raw.stage[0], "window") == 32 &&
              lkv_press_stage_get(&raw.stage[0], "budget") == 1000 &&
              lkv_press_stage_get(&raw.stage[0], "ratio") == LKV_PRESS_UNSET &&
              lkv_press_stage_get(&raw.stage[0], "pool") == 1,
          "resolved values");

    char buf[16384];
    size_t n = lkv_press_list(buf, sizeof buf);
    CHECK(n < sizeof buf && strstr(buf, "snapkv") && strstr(buf, "window") && strstr(buf, "kivi"),
          "list mentions methods and params");
    char small[32];
    CHECK(lkv_press_list(small, sizeof small) == n && strlen(small) == sizeof small - 1,
          "truncated list");
    return lkv_test_finish("test_press_spec");
}

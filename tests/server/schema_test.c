/* JSON Schema validation: a table of valid and invalid instances per
 * keyword, each failure checked for its exact path and rule; schemas the
 * validator refuses, refused at compile time. */
#include <string.h>

#include "sq_server/schema.h"
#include "testlib.h"

typedef struct row {
    const char *schema;
    const char *instance;
    const char *path;   /* NULL: valid */
    const char *rule;
} row;

static const row rows[] = {
    /* type */
    {"{'type':'string'}", "'x'", NULL, NULL},
    {"{'type':'string'}", "1", "", "type"},
    {"{'type':'integer'}", "3", NULL, NULL},
    {"{'type':'integer'}", "3.0", NULL, NULL},
    {"{'type':'integer'}", "3.5", "", "type"},
    {"{'type':'number'}", "3.5", NULL, NULL},
    {"{'type':['string','null']}", "null", NULL, NULL},
    {"{'type':['string','null']}", "true", "", "type"},
    {"{'type':'boolean'}", "false", NULL, NULL},
    {"{'type':'array'}", "{}", "", "type"},
    /* enum, const */
    {"{'enum':['a','b',1]}", "1", NULL, NULL},
    {"{'enum':['a','b',1]}", "'c'", "", "enum"},
    {"{'const':{'a':[1,2]}}", "{'a':[1,2]}", NULL, NULL},
    {"{'const':{'a':[1,2]}}", "{'a':[2,1]}", "", "const"},
    /* numbers */
    {"{'minimum':0,'maximum':10}", "10", NULL, NULL},
    {"{'minimum':0,'maximum':10}", "-1", "", "minimum"},
    {"{'minimum':0,'maximum':10}", "10.5", "", "maximum"},
    {"{'exclusiveMinimum':0}", "0", "", "exclusiveMinimum"},
    {"{'exclusiveMaximum':5}", "4.99", NULL, NULL},
    {"{'exclusiveMaximum':5}", "5", "", "exclusiveMaximum"},
    {"{'multipleOf':0.1}", "0.3", NULL, NULL},
    {"{'multipleOf':3}", "10", "", "multipleOf"},
    /* strings */
    {"{'minLength':2,'maxLength':3}", "'\xc3\xa9t\xc3\xa9'", NULL, NULL},
    {"{'minLength':2}", "'\xc3\xa9'", "", "minLength"},
    {"{'maxLength':3}", "'abcd'", "", "maxLength"},
    {"{'pattern':'^[a-z]+\\\\d$'}", "'abc7'", NULL, NULL},
    {"{'pattern':'^[a-z]+\\\\d$'}", "'abc'", "", "pattern"},
    /* objects */
    {"{'required':['a','b']}", "{'a':1,'b':2}", NULL, NULL},
    {"{'required':['a','b']}", "{'a':1}", "/b", "required"},
    {"{'properties':{'a':{'type':'string'}}}", "{'a':1}", "/a", "type"},
    {"{'properties':{'a':{}},'additionalProperties':false}", "{'a':1,'z':2}", "/z",
     "additionalProperties"},
    {"{'additionalProperties':{'type':'integer'}}", "{'x':'s'}", "/x", "type"},
    {"{'patternProperties':{'^n_':{'type':'number'}}}", "{'n_a':'x'}", "/n_a", "type"},
    {"{'propertyNames':{'maxLength':3}}", "{'long':1}", "/long", "propertyNames"},
    {"{'minProperties':1}", "{}", "", "minProperties"},
    {"{'maxProperties':1}", "{'a':1,'b':2}", "", "maxProperties"},
    {"{'dependentRequired':{'a':['b']}}", "{'a':1}", "/b", "dependentRequired"},
    {"{'properties':{'o':{'properties':{'p':{'required':['q']}}}}}", "{'o':{'p':{}}}",
     "/o/p/q", "required"},
    {"{'properties':{'a/b~c':{'type':'null'}}}", "{'a/b~c':1}", "/a~1b~0c", "type"},
    /* arrays */
    {"{'items':{'type':'integer'}}", "[1,2,3]", NULL, NULL},
    {"{'items':{'type':'integer'}}", "[1,'x',3]", "/1", "type"},
    {"{'prefixItems':[{'type':'string'}],'items':{'type':'number'}}", "['a',1,2]", NULL,
     NULL},
    {"{'prefixItems':[{'type':'string'}],'items':false}", "['a',1]", "/1", "items"},
    {"{'minItems':2}", "[1]", "", "minItems"},
    {"{'maxItems':1}", "[1,2]", "", "maxItems"},
    {"{'uniqueItems':true}", "[1,{'a':1},{'a':1}]", "", "uniqueItems"},
    {"{'contains':{'const':3}}", "[1,2]", "", "contains"},
    {"{'contains':{'const':3},'maxContains':1}", "[3,3]", "", "maxContains"},
    /* composition */
    {"{'allOf':[{'type':'integer'},{'minimum':5}]}", "4", "", "minimum"},
    {"{'anyOf':[{'type':'string'},{'type':'integer'}]}", "true", "", "anyOf"},
    {"{'oneOf':[{'type':'integer'},{'minimum':0}]}", "5", "", "oneOf"},
    {"{'oneOf':[{'type':'integer'},{'minimum':0}]}", "5.5", NULL, NULL},
    {"{'not':{'type':'null'}}", "null", "", "not"},
    {"{'if':{'properties':{'k':{'const':'p'}},'required':['k']},'then':{'required':['p']},"
     "'else':{'required':['e']}}",
     "{'k':'p'}", "/p", "required"},
    {"{'if':{'properties':{'k':{'const':'p'}},'required':['k']},'then':{'required':['p']},"
     "'else':{'required':['e']}}",
     "{'k':'q'}", "/e", "required"},
    /* references */
    {"{'$defs':{'pos':{'type':'integer','minimum':1}},'properties':{'n':{'$ref':'#/$defs/pos'}}}",
     "{'n':0}", "/n", "minimum"},
    {"{'$defs':{'a':{'$anchor':'addr','required':['city']}},'properties':{'h':{'$ref':'#addr'}}}",
     "{'h':{}}", "/h/city", "required"},
    {"{'type':'object','properties':{'next':{'$ref':'#'},'v':{'type':'integer'}}}",
     "{'v':1,'next':{'v':2,'next':{'v':'x'}}}", "/next/next/v", "type"},
    /* boolean schemas */
    {"true", "{'anything':[1]}", NULL, NULL},
    {"false", "1", "", "false"},
    /* the benchmark's validated tool */
    {"{'type':'object','required':['text','count','mode'],'additionalProperties':false,"
     "'properties':{'text':{'type':'string','minLength':1,'maxLength':256},"
     "'count':{'type':'integer','minimum':0,'maximum':1000},"
     "'mode':{'enum':['fast','safe','full']}}}",
     "{'text':'x','count':1001,'mode':'fast'}", "/count", "maximum"},
};

/* The table's JSON uses ' for " (no ' occurs in the data). */
static json_t *load(const char *text)
{
    char buf[1024];
    size_t n = strlen(text);
    CHECK(n < sizeof buf);
    for (size_t i = 0; i <= n; i++)
        buf[i] = text[i] == '\'' ? '"' : text[i];
    json_error_t e;
    json_t *j = json_loads(buf, JSON_DECODE_ANY, &e);
    if (!j)
        fprintf(stderr, "bad table JSON: %s (%s)\n", text, e.text);
    CHECK(j != NULL);
    return j;
}

TEST(every_row_of_the_table_validates_as_expected)
{
    for (size_t i = 0; i < sizeof rows / sizeof *rows; i++) {
        const row *r = &rows[i];
        json_t *schema = load(r->schema), *inst = load(r->instance);
        char err[256];
        sq_schema *s = sq_schema_compile(schema, err, sizeof err);
        if (!s)
            fprintf(stderr, "row %zu: %s\n", i, err);
        CHECK(s != NULL);
        sq_schema_error e;
        int rc = s ? sq_schema_validate(s, inst, &e) : 0;
        if (s && ((r->path == NULL) != (rc == 0) ||
                  (r->path && (strcmp(e.path, r->path) || strcmp(e.rule, r->rule))))) {
            fprintf(stderr, "row %zu: %s on %s: rc %d path '%s' rule '%s' (%s)\n", i,
                    r->schema, r->instance, rc, e.path, e.rule, e.message);
            CHECK(!"row failed");
        }
        sq_schema_free(s);
        json_decref(schema);
        json_decref(inst);
    }
}

TEST(unsupported_schemas_are_refused_at_compile_time)
{
    const char *bad[] = {
        "{'$ref':'https://example.com/s.json'}",
        "{'$ref':'#/$defs/missing'}",
        "{'$dynamicRef':'#x'}",
        "{'unevaluatedProperties':false}",
        "{'pattern':'(?=x)'}",
        "{'pattern':'a+?'}",
        "{'pattern':'(a)\\\\1'}",
        "{'type':'thing'}",
        "{'minLength':-1}",
        "{'multipleOf':0}",
        "{'$schema':'http://json-schema.org/draft-07/schema#'}",
        "{'allOf':[]}",
        "3",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        json_t *j = load(bad[i]);
        char err[256] = "";
        sq_schema *s = sq_schema_compile(j, err, sizeof err);
        if (s)
            fprintf(stderr, "accepted: %s\n", bad[i]);
        CHECK(s == NULL);
        CHECK(err[0] != '\0');
        json_decref(j);
    }
}

TEST(the_conformance_2020_12_schema_compiles_and_checks)
{
    json_t *s = load("{'$schema':'https://json-schema.org/draft/2020-12/schema',"
                     "'type':'object','$defs':{'address':{'$anchor':'addressDef',"
                     "'type':'object','properties':{'street':{'type':'string'},"
                     "'city':{'type':'string'}}}},'properties':{'name':{'type':'string'},"
                     "'address':{'$ref':'#/$defs/address'},'contactMethod':{'type':"
                     "'string','enum':['phone','email']},'phone':{'type':'string'},"
                     "'email':{'type':'string'}},'allOf':[{'anyOf':[{'required':['phone']},"
                     "{'required':['email']}]}],'if':{'properties':{'contactMethod':"
                     "{'const':'phone'}},'required':['contactMethod']},'then':{'required':"
                     "['phone']},'else':{'required':['email']},'additionalProperties':false}");
    char err[256];
    sq_schema *c = sq_schema_compile(s, err, sizeof err);
    CHECK(c != NULL);
    json_t *ok = load("{'name':'n','contactMethod':'phone','phone':'1'}");
    json_t *no = load("{'name':'n','contactMethod':'phone','email':'e'}");
    sq_schema_error e;
    CHECK(sq_schema_validate(c, ok, &e) == 0);
    CHECK(sq_schema_validate(c, no, &e) == -1);
    CHECK(strcmp(e.rule, "required") == 0 && strcmp(e.path, "/phone") == 0);
    json_decref(ok);
    json_decref(no);
    sq_schema_free(c);
    json_decref(s);
}

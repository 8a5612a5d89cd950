/* squirreld's server layer: JSON Schema validation (the 2020-12 dialect,
 * the part that tool input schemas use), for the command system: a call's
 * arguments are validated before anything runs, and a failure names the
 * failing place and rule.
 *
 * Supported keywords: type (a name or a list), enum, const; minimum,
 * maximum, exclusiveMinimum, exclusiveMaximum, multipleOf; minLength,
 * maxLength (in characters), pattern; properties, required,
 * additionalProperties, patternProperties, propertyNames, minProperties,
 * maxProperties, dependentRequired; items, prefixItems, minItems,
 * maxItems, uniqueItems, contains, minContains, maxContains; allOf, anyOf,
 * oneOf, not, if/then/else; $defs (and definitions), $ref to "#", to a
 * JSON pointer within the same schema ("#/$defs/x") and to an $anchor
 * ("#name").  Annotations (title, description, default, examples,
 * format, $schema, $id, $comment, deprecated, readOnly, writeOnly, and
 * x-... extensions) are accepted and not checked.
 *
 * Not supported, refused at compile time with a clear error: $ref to
 * anything outside the schema (network or file), $dynamicRef and
 * $dynamicAnchor, unevaluatedProperties, unevaluatedItems,
 * dependentSchemas, contentSchema and $vocabulary; a $schema naming
 * another dialect.  `pattern` is a POSIX extended regular expression, with
 * \d, \w and \s (and \D, \W, \S) translated; anything else ECMA-262 has
 * and POSIX has not (lookaround, lazy quantifiers, backreferences) is
 * refused at compile time.  Never waits.
 */
#ifndef SQ_SERVER_SCHEMA_H
#define SQ_SERVER_SCHEMA_H

#include "sq_proto/jansson.h"
#include <stddef.h>

typedef struct sq_schema sq_schema;

/* Compiles a schema (borrowed; the compiled form keeps a reference).
 * NULL with a message in err (errlen bytes) if it is not a schema this
 * validator can check, or out of memory. */
sq_schema *sq_schema_compile(json_t *schema, char *err, size_t errlen);
void sq_schema_free(sq_schema *s);

/* Where and why an instance failed. */
typedef struct sq_schema_error {
    char path[256];      /* JSON pointer into the instance: "/count", "" */
    char rule[32];       /* the keyword: "maximum", "required", ... */
    char message[256];   /* a sentence a person can act on */
} sq_schema_error;

/* Validates instance against s: 0 if it conforms, -1 with *e describing
 * the first failure found (e may be NULL).  Thread-safe on one compiled
 * schema. */
int sq_schema_validate(const sq_schema *s, json_t *instance, sq_schema_error *e);

#endif

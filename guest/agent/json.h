/* Minimal JSON for the tcelab guest agent: requests are small objects of
 * strings, integers, booleans and arrays; replies are written with a string
 * builder. No allocation survives a request (everything is freed per line). */
#ifndef TCELAB_JSON_H
#define TCELAB_JSON_H
#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

enum jtype { J_NULL, J_BOOL, J_NUM, J_STR, J_ARR, J_OBJ };

struct jval {
	enum jtype type;
	bool b;
	double num;
	char *str;          /* J_STR */
	int n;              /* J_ARR / J_OBJ */
	char **keys;        /* J_OBJ */
	struct jval *items; /* J_ARR / J_OBJ */
};

/* Parses text into *out; returns NULL or a static error description. */
const char *json_parse(const char *text, struct jval *out);
void json_free(struct jval *v);
const struct jval *json_get(const struct jval *obj, const char *key);

/* Typed argument access: 0 on success, -1 missing, -2 wrong type/range. */
int json_u64(const struct jval *obj, const char *key, uint64_t *out);
/* One value (an array's item) as json_u64 reads it: a non-negative integer, or a string such as "0x1c". */
int json_val_u64(const struct jval *v, uint64_t *out);
int json_str(const struct jval *obj, const char *key, const char **out);
int json_bool(const struct jval *obj, const char *key, bool *out);

struct sbuf {
	char *buf;
	size_t len, cap;
};
void sb_init(struct sbuf *s);
void sb_free(struct sbuf *s);
void sb_raw(struct sbuf *s, const char *text);
void sb_fmt(struct sbuf *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sb_jstr(struct sbuf *s, const char *text);      /* quoted, escaped */
void sb_jstrn(struct sbuf *s, const char *text, size_t n);
void json_write(struct sbuf *s, const struct jval *v);
#endif

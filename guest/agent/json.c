#include "json.h"
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <stdarg.h>
#include <errno.h>

#define MAX_DEPTH 16
#define MAX_ITEMS 4096

struct parser {
	const char *p;
	int depth;
};

static void skip_ws(struct parser *ps)
{
	while (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r')
		ps->p++;
}

static const char *parse_value(struct parser *ps, struct jval *out);

static const char *parse_string(struct parser *ps, char **out)
{
	struct sbuf s;
	if (*ps->p != '"')
		return "expected a string";
	ps->p++;
	sb_init(&s);
	while (*ps->p && *ps->p != '"') {
		char c = *ps->p++;
		if ((unsigned char)c < 0x20) {
			sb_free(&s);
			return "control character in string";
		}
		if (c == '\\') {
			char e = *ps->p++;
			switch (e) {
			case '"': case '\\': case '/': c = e; break;
			case 'n': c = '\n'; break;
			case 't': c = '\t'; break;
			case 'r': c = '\r'; break;
			case 'b': c = '\b'; break;
			case 'f': c = '\f'; break;
			case 'u': {
				unsigned v = 0;
				for (int i = 0; i < 4; i++) {
					char h = *ps->p++;
					v <<= 4;
					if (h >= '0' && h <= '9') v |= h - '0';
					else if (h >= 'a' && h <= 'f') v |= h - 'a' + 10;
					else if (h >= 'A' && h <= 'F') v |= h - 'A' + 10;
					else { sb_free(&s); return "bad \\u escape"; }
				}
				/* Arguments are ASCII paths and names: anything else becomes '?'. */
				c = v < 0x80 && v != 0 ? (char)v : '?';
				break;
			}
			default:
				sb_free(&s);
				return "bad escape in string";
			}
		}
		char one[2] = { c, 0 };
		sb_raw(&s, one);
	}
	if (*ps->p != '"') {
		sb_free(&s);
		return "unterminated string";
	}
	ps->p++;
	*out = s.buf ? s.buf : strdup("");
	return NULL;
}

static const char *parse_container(struct parser *ps, struct jval *out, bool object)
{
	char close = object ? '}' : ']';
	int cap = 0;
	if (++ps->depth > MAX_DEPTH)
		return "nesting too deep";
	out->type = object ? J_OBJ : J_ARR;
	ps->p++;
	skip_ws(ps);
	if (*ps->p == close) {
		ps->p++;
		ps->depth--;
		return NULL;
	}
	for (;;) {
		if (out->n >= MAX_ITEMS)
			return "too many items";
		if (out->n == cap) {
			cap = cap ? cap * 2 : 8;
			out->items = realloc(out->items, cap * sizeof(*out->items));
			if (object)
				out->keys = realloc(out->keys, cap * sizeof(*out->keys));
		}
		memset(&out->items[out->n], 0, sizeof(out->items[0]));
		skip_ws(ps);
		if (object) {
			const char *err = parse_string(ps, &out->keys[out->n]);
			if (err)
				return err;
			skip_ws(ps);
			if (*ps->p != ':') {
				free(out->keys[out->n]);
				return "expected ':'";
			}
			ps->p++;
		}
		const char *err = parse_value(ps, &out->items[out->n]);
		out->n++;
		if (err)
			return err;
		skip_ws(ps);
		if (*ps->p == ',') {
			ps->p++;
			continue;
		}
		if (*ps->p == close) {
			ps->p++;
			ps->depth--;
			return NULL;
		}
		return object ? "expected ',' or '}'" : "expected ',' or ']'";
	}
}

static const char *parse_value(struct parser *ps, struct jval *out)
{
	skip_ws(ps);
	memset(out, 0, sizeof(*out));
	switch (*ps->p) {
	case '{': return parse_container(ps, out, true);
	case '[': return parse_container(ps, out, false);
	case '"': out->type = J_STR; return parse_string(ps, &out->str);
	case 't': if (!strncmp(ps->p, "true", 4)) { ps->p += 4; out->type = J_BOOL; out->b = true; return NULL; } break;
	case 'f': if (!strncmp(ps->p, "false", 5)) { ps->p += 5; out->type = J_BOOL; return NULL; } break;
	case 'n': if (!strncmp(ps->p, "null", 4)) { ps->p += 4; out->type = J_NULL; return NULL; } break;
	default:
		if (*ps->p == '-' || (*ps->p >= '0' && *ps->p <= '9')) {
			char *end;
			errno = 0;
			out->num = strtod(ps->p, &end);
			if (end == ps->p || errno)
				return "bad number";
			ps->p = end;
			out->type = J_NUM;
			return NULL;
		}
	}
	return "unexpected character";
}

const char *json_parse(const char *text, struct jval *out)
{
	struct parser ps = { text, 0 };
	const char *err = parse_value(&ps, out);
	if (!err) {
		skip_ws(&ps);
		if (*ps.p)
			err = "trailing characters after the JSON value";
	}
	if (err) {
		json_free(out);
		memset(out, 0, sizeof(*out));
	}
	return err;
}

void json_free(struct jval *v)
{
	if (v->type == J_STR)
		free(v->str);
	if (v->type == J_ARR || v->type == J_OBJ) {
		for (int i = 0; i < v->n; i++) {
			json_free(&v->items[i]);
			if (v->keys)
				free(v->keys[i]);
		}
		free(v->items);
		free(v->keys);
	}
	v->type = J_NULL;
}

const struct jval *json_get(const struct jval *obj, const char *key)
{
	if (!obj || obj->type != J_OBJ)
		return NULL;
	for (int i = 0; i < obj->n; i++)
		if (!strcmp(obj->keys[i], key))
			return &obj->items[i];
	return NULL;
}

int json_val_u64(const struct jval *v, uint64_t *out)
{
	if (v->type == J_NUM) {
		if (v->num < 0 || v->num > 9007199254740992.0 || v->num != (double)(uint64_t)v->num)
			return -2;
		*out = (uint64_t)v->num;
		return 0;
	}
	if (v->type == J_STR) {
		/* Addresses above 2^53 travel as strings ("0x0800000000000000"). */
		char *end;
		errno = 0;
		unsigned long long x = strtoull(v->str, &end, 0);
		if (errno || end == v->str || *end || v->str[0] == '-')
			return -2;
		*out = x;
		return 0;
	}
	return -2;
}

int json_u64(const struct jval *obj, const char *key, uint64_t *out)
{
	const struct jval *v = json_get(obj, key);
	if (!v)
		return -1;
	return json_val_u64(v, out);
}

int json_str(const struct jval *obj, const char *key, const char **out)
{
	const struct jval *v = json_get(obj, key);
	if (!v)
		return -1;
	if (v->type != J_STR)
		return -2;
	*out = v->str;
	return 0;
}

int json_bool(const struct jval *obj, const char *key, bool *out)
{
	const struct jval *v = json_get(obj, key);
	if (!v)
		return -1;
	if (v->type != J_BOOL)
		return -2;
	*out = v->b;
	return 0;
}

void sb_init(struct sbuf *s)
{
	s->buf = NULL;
	s->len = s->cap = 0;
}

void sb_free(struct sbuf *s)
{
	free(s->buf);
	sb_init(s);
}

static void sb_reserve(struct sbuf *s, size_t extra)
{
	if (s->len + extra + 1 <= s->cap)
		return;
	while (s->len + extra + 1 > s->cap)
		s->cap = s->cap ? s->cap * 2 : 256;
	s->buf = realloc(s->buf, s->cap);
	if (!s->buf)
		abort();
}

void sb_raw(struct sbuf *s, const char *text)
{
	size_t n = strlen(text);
	sb_reserve(s, n);
	memcpy(s->buf + s->len, text, n + 1);
	s->len += n;
}

void sb_fmt(struct sbuf *s, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	sb_reserve(s, n);
	va_start(ap, fmt);
	vsnprintf(s->buf + s->len, n + 1, fmt, ap);
	va_end(ap);
	s->len += n;
}

void sb_jstrn(struct sbuf *s, const char *text, size_t n)
{
	sb_raw(s, "\"");
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)text[i];
		if (c == '"' || c == '\\')
			sb_fmt(s, "\\%c", c);
		else if (c == '\n')
			sb_raw(s, "\\n");
		else if (c < 0x20 || c >= 0x7f)
			sb_fmt(s, "\\u%04x", c);
		else {
			char one[2] = { (char)c, 0 };
			sb_raw(s, one);
		}
	}
	sb_raw(s, "\"");
}

void sb_jstr(struct sbuf *s, const char *text)
{
	sb_jstrn(s, text, strlen(text));
}

/* Writes a parsed value back as JSON (used to forward worker arguments). */
void json_write(struct sbuf *s, const struct jval *v)
{
	switch (v->type) {
	case J_NULL: sb_raw(s, "null"); break;
	case J_BOOL: sb_raw(s, v->b ? "true" : "false"); break;
	case J_NUM:
		if (v->num == (double)(long long)v->num)
			sb_fmt(s, "%lld", (long long)v->num);
		else
			sb_fmt(s, "%.17g", v->num);
		break;
	case J_STR: sb_jstr(s, v->str); break;
	case J_ARR:
	case J_OBJ:
		sb_raw(s, v->type == J_ARR ? "[" : "{");
		for (int i = 0; i < v->n; i++) {
			if (i)
				sb_raw(s, ",");
			if (v->type == J_OBJ) {
				sb_jstr(s, v->keys[i]);
				sb_raw(s, ":");
			}
			json_write(s, &v->items[i]);
		}
		sb_raw(s, v->type == J_ARR ? "]" : "}");
		break;
	}
}

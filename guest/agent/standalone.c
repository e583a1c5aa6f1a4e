/*
 * `tcelab-agent run STEPS [name=value ...]`: a scenario's guest-side steps, run from a file on any ppc64le Linux
 * with the VFIO sPAPR modules, without the controller (a reproducer bundle's runner). The steps use the agent's
 * own commands (bind, worker open/alloc/register/…, counters), so a step does here what it does in a lab.
 *
 * STEPS holds one JSON object per line (blank lines and lines starting with # are skipped):
 *   {"note": "text"}                          printed as a KTAP diagnostic
 *   {"sleepMs": N}                            a pause (a "still held N ms later" check follows one)
 *   {"execute": CMD, "arguments": {...},      an agent command, or one of the runner's own (kernel-log,
 *                                             khugepaged-pass)
 *    "save": {"var": "path.in.reply"},        reply values kept for later steps as "$var"
 *    "check": "name",                         makes the step a verdict: one KTAP result line
 *    "expect": {"error": "EBUSY"} | {"ok": true} | {"value": EXPR, "equals"|"atLeast"|"atMost": EXPR},
 *    "waitMs": N,                             the command is repeated until the expectation holds or N ms pass
 *    "atRest": true,                          … or until two replies in a row that ran an RCU barrier observe the
 *                                             same (counters with "rcuBarrier": true: a release will not come)
 *    "knownDefect": "text"}                   said when the check fails: what the failure means
 * A JSON string that is exactly "$name" is replaced by that variable's value (name=value arguments and saves).
 * EXPR: numbers, $variables, reply paths (process.vmLckKb), + - * / and parentheses.
 *
 * Exit code: 0 every check passed, 1 a check failed, 2 the steps could not run (bad file, a setup step failed).
 */
#include "agent.h"
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <regex.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#define MAX_VARS 64
#define MAX_STEP_LINE 65536

struct var {
	char name[64];
	char *json; /* the value as JSON text */
};

static struct var vars[MAX_VARS];
static int nvars;
static int kmsg_fd = -1;

static struct var *find_var(const char *name, size_t len)
{
	for (int i = 0; i < nvars; i++)
		if (strlen(vars[i].name) == len && !strncmp(vars[i].name, name, len))
			return &vars[i];
	return NULL;
}

static int set_var(const char *name, const char *json)
{
	struct var *v = find_var(name, strlen(name));
	if (!v) {
		if (nvars == MAX_VARS || strlen(name) >= sizeof(vars[0].name))
			return -1;
		v = &vars[nvars++];
		snprintf(v->name, sizeof(v->name), "%s", name);
	} else {
		free(v->json);
	}
	v->json = strdup(json);
	return 0;
}

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Replaces every JSON string "$name" by the variable's JSON; an unknown name is an error (named in err). */
static int substitute(const char *line, struct sbuf *out, char *err, size_t errlen)
{
	const char *p = line;
	while (*p) {
		if (p[0] == '"' && p[1] == '$') {
			const char *end = strchr(p + 2, '"');
			if (end) {
				struct var *v = find_var(p + 2, (size_t)(end - p - 2));
				if (!v) {
					snprintf(err, errlen, "no variable $%.*s (set it as name=value or save it from an earlier step)", (int)(end - p - 2), p + 2);
					return -1;
				}
				sb_raw(out, v->json);
				p = end + 1;
				continue;
			}
		}
		char one[2] = { *p++, 0 };
		sb_raw(out, one);
	}
	return 0;
}

/* A dotted path into a JSON value ("process.vmLckKb"), or NULL. */
static const struct jval *at_path(const struct jval *v, const char *path, size_t len)
{
	char key[128];
	while (v && len) {
		size_t n = 0;
		while (n < len && path[n] != '.')
			n++;
		if (n >= sizeof(key))
			return NULL;
		memcpy(key, path, n);
		key[n] = 0;
		v = v->type == J_OBJ ? json_get(v, key) : NULL;
		path += n + (n < len);
		len -= n + (n < len);
	}
	return v;
}

/* Expressions: sum := term {(+|-) term}; term := factor {(*|/) factor}; factor := number | $var | path | (sum) | -factor. */
struct expr {
	const char *p;
	const struct jval *ret;
	char err[200];
};

static double sum(struct expr *e);

static double factor(struct expr *e)
{
	while (*e->p == ' ')
		e->p++;
	if (*e->p == '(') {
		e->p++;
		double v = sum(e);
		while (*e->p == ' ')
			e->p++;
		if (*e->p != ')' && !e->err[0])
			snprintf(e->err, sizeof(e->err), "')' expected at \"%s\"", e->p);
		else
			e->p++;
		return v;
	}
	if (*e->p == '-') {
		e->p++;
		return -factor(e);
	}
	if ((*e->p >= '0' && *e->p <= '9') || *e->p == '.') {
		char *end;
		double v = strtod(e->p, &end);
		e->p = end;
		return v;
	}
	int is_var = *e->p == '$';
	const char *start = e->p + is_var;
	const char *q = start;
	while ((*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z') || (*q >= '0' && *q <= '9') || *q == '_' || *q == '.')
		q++;
	if (q == start) {
		if (!e->err[0])
			snprintf(e->err, sizeof(e->err), "a number, $variable or reply field expected at \"%s\"", e->p);
		return 0;
	}
	e->p = q;
	const char *text = NULL;
	struct jval parsed = { 0 };
	const struct jval *v = NULL;
	if (is_var) {
		struct var *var = find_var(start, (size_t)(q - start));
		if (var && !json_parse(var->json, &parsed))
			v = &parsed;
		text = "variable";
	} else {
		v = at_path(e->ret, start, (size_t)(q - start));
		text = "reply field";
	}
	double out = 0;
	if (v && v->type == J_NUM)
		out = v->num;
	else if (v && v->type == J_BOOL)
		out = v->b;
	else if (!e->err[0])
		snprintf(e->err, sizeof(e->err), "%s %s%.*s is not a number", text, is_var ? "$" : "", (int)(q - start), start);
	if (is_var)
		json_free(&parsed);
	return out;
}

static double term(struct expr *e)
{
	double v = factor(e);
	for (;;) {
		while (*e->p == ' ')
			e->p++;
		if (*e->p == '*') {
			e->p++;
			v *= factor(e);
		} else if (*e->p == '/') {
			e->p++;
			double d = factor(e);
			v = d ? v / d : NAN;
		} else {
			return v;
		}
	}
}

static double sum(struct expr *e)
{
	double v = term(e);
	for (;;) {
		while (*e->p == ' ')
			e->p++;
		if (*e->p == '+') {
			e->p++;
			v += term(e);
		} else if (*e->p == '-') {
			e->p++;
			v -= term(e);
		} else {
			return v;
		}
	}
}

/* An expression given as a JSON number or string; 0 with err set when it cannot be evaluated. */
static double eval(const struct jval *x, const struct jval *ret, char *err, size_t errlen)
{
	if (x->type == J_NUM)
		return x->num;
	if (x->type != J_STR) {
		snprintf(err, errlen, "an expression is a number or a string");
		return 0;
	}
	struct expr e = { .p = x->str, .ret = ret };
	double v = sum(&e);
	while (*e.p == ' ')
		e.p++;
	if (!e.err[0] && *e.p)
		snprintf(e.err, sizeof(e.err), "unexpected \"%s\"", e.p);
	if (e.err[0])
		snprintf(err, errlen, "%s: %s", x->str, e.err);
	return v;
}

/*
 * The kernel-log command: what the kernel logged since the runner started, scanned for the reports the lab's
 * kernel-log verdict looks for (src/scenario/kernel-log.ts; ERE here). Returns {"reports", "excerpt"}.
 */
static const char *const report_patterns[] = {
	"Kernel panic - not syncing",
	"Oops: ",
	"BUG: ",
	"hard LOCKUP",
	"WARNING: (CPU: [0-9]+ PID: [0-9]+ at |at )?[^ ]+\\.[ch]:[0-9]+",
	"rcu: INFO: [^ ]+ (self-)?detected stalls?|rcu_[a-z_]+ (self-)?detected stall",
	"INFO: task [^ ]+ blocked for more than [0-9]+ seconds",
};

static enum outcome cmd_kernel_log(const struct request *req, struct reply *r)
{
	(void)req;
	if (kmsg_fd < 0)
		return fail(r, "ENOENT", "/dev/kmsg could not be opened when the run started");
	regex_t re[sizeof(report_patterns) / sizeof(report_patterns[0])];
	for (size_t i = 0; i < sizeof(re) / sizeof(re[0]); i++)
		regcomp(&re[i], report_patterns[i], REG_EXTENDED | REG_NOSUB);
	int reports = 0, excerpt = 0;
	sb_raw(&r->val, "{\"excerpt\":[");
	char rec[8192];
	for (;;) {
		ssize_t n = read(kmsg_fd, rec, sizeof(rec) - 1);
		if (n < 0 && errno == EPIPE)
			continue; /* records were overwritten while we read: go on with the next */
		if (n <= 0)
			break;
		rec[n] = 0;
		char *msg = strchr(rec, ';');
		if (!msg)
			continue;
		msg++;
		char *nl = strchr(msg, '\n');
		if (nl)
			*nl = 0;
		int is_report = 0;
		for (size_t i = 0; i < sizeof(re) / sizeof(re[0]) && !is_report; i++)
			is_report = !regexec(&re[i], msg, 0, NULL, 0);
		reports += is_report;
		/* The first report and the lines after it: what a maintainer reads first. */
		if ((is_report && reports == 1) || (excerpt && excerpt < 32)) {
			/* kmsg escapes a record's embedded newlines as \x0a: one excerpt line each. */
			for (char *line = msg; line; excerpt++) {
				char *next = strstr(line, "\\x0a");
				if (next)
					*next = 0;
				/* Register dumps say little here; the NIP, LR and the call trace stay. */
				if (strncmp(line, "GPR", 3)) {
					sb_raw(&r->val, excerpt ? "," : "");
					sb_jstr(&r->val, line);
				} else {
					excerpt--;
				}
				line = next ? next + 4 : NULL;
			}
		}
	}
	for (size_t i = 0; i < sizeof(re) / sizeof(re[0]); i++)
		regfree(&re[i]);
	sb_fmt(&r->val, "],\"reports\":%d}", reports);
	return REPLY_OK;
}

/* The reply of the one program exec_wait() runs, as exec_service() delivers it. */
static struct reply exec_reply;
static enum outcome exec_outcome;
static int exec_done;

static void exec_capture(const struct sbuf *id, struct reply *r, enum outcome o)
{
	(void)id;
	sb_init(&exec_reply.val);
	if (r->val.len)
		sb_raw(&exec_reply.val, r->val.buf);
	exec_outcome = o;
	exec_done = 1;
}

/*
 * The agent's exec, waited for: a step runs a program (a VMM, modprobe) and gets its exit code and output, as the
 * controller would. The agent replies to exec later, from its poll loop; the runner has no loop, so it polls here.
 */
static enum outcome cmd_exec_wait(const struct request *req, struct reply *r)
{
	enum outcome o = cmd_exec(req, r);
	if (o != REPLY_LATER)
		return o;
	exec_done = 0;
	while (!exec_done) {
		struct pollfd p[8];
		int n = exec_poll_fds(p, 8);
		poll(p, n, 50);
		exec_service(exec_capture);
	}
	sb_raw(&r->val, exec_reply.val.buf ? exec_reply.val.buf : "{}");
	sb_free(&exec_reply.val);
	return exec_outcome;
}

/* The runner's own commands; everything else is the agent's table. */
#define KHUGEPAGED "/sys/kernel/mm/transparent_hugepage/khugepaged/"

/*
 * The khugepaged-pass command: wakes khugepaged without changing a setting (writing its scan interval back wakes
 * it) until it has completed a full scan (full_scans grows), at most 30 s. A dead process's mm that khugepaged still
 * holds is dropped on that pass (collect_mm_slot → mmdrop): on 6.12 that is when destroy_context() runs, 5–20 s
 * after the exit otherwise. Without THP (no khugepaged) it waits 10 s instead. Returns {"fullScans", "ms"}.
 */
static long long khugepaged_full_scans(void)
{
	char buf[32];
	return read_text(KHUGEPAGED "full_scans", buf, sizeof buf) > 0 ? strtoll(buf, NULL, 10) : -1;
}

static enum outcome cmd_khugepaged_pass(const struct request *req, struct reply *r)
{
	(void)req;
	char interval[32];
	long long start = now_ms();
	long long before = khugepaged_full_scans();
	if (before < 0 || read_text(KHUGEPAGED "scan_sleep_millisecs", interval, sizeof interval) <= 0) {
		usleep(10000 * 1000);
		sb_fmt(&r->val, "{\"fullScans\":null,\"ms\":%lld}", now_ms() - start);
		return REPLY_OK;
	}
	long long now = before;
	for (int i = 0; now <= before && now_ms() - start < 30000; i++) {
		if (i % 10 == 0)
			write_text(KHUGEPAGED "scan_sleep_millisecs", interval);
		usleep(50000);
		now = khugepaged_full_scans();
	}
	sb_fmt(&r->val, "{\"fullScans\":%lld,\"ms\":%lld}", now, now_ms() - start);
	return REPLY_OK;
}

static const struct {
	const char *name;
	command_fn fn;
} own_commands[] = {
	{ "kernel-log", cmd_kernel_log },
	{ "khugepaged-pass", cmd_khugepaged_pass },
	{ "exec", cmd_exec_wait },
};

/* Agent commands that reply later or act on the agent's port: they have no meaning without the controller. */
static const char *const lab_only[] = { "spawn", "relay-open", "stream-read", "stream-write", "stream-close", "poweroff", "sync-delimited" };

/* Runs one command and returns its reply as parsed JSON: {"return": …} or {"error": {"class", "desc"}}. */
static void run_command(const char *name, const struct jval *args, struct jval *out)
{
	struct reply r;
	memset(&r, 0, sizeof(r));
	sb_init(&r.val);
	enum outcome o = REPLY_ERROR;
	command_fn own = NULL;
	for (size_t i = 0; i < sizeof(own_commands) / sizeof(own_commands[0]); i++)
		if (!strcmp(own_commands[i].name, name))
			own = own_commands[i].fn;
	int refused = 0;
	for (size_t i = 0; i < sizeof(lab_only) / sizeof(lab_only[0]); i++)
		refused |= !strcmp(lab_only[i], name);
	static const struct sbuf no_id;
	if (refused)
		o = fail(&r, "CommandNotFound", "'%s' needs the controller; it cannot run standalone", name);
	else if (own)
		o = own(&(struct request){ .args = args, .id = &no_id }, &r);
	else
		o = agent_command(name, args, &r);
	struct sbuf text;
	sb_init(&text);
	reply_format(&text, &r, o, NULL);
	if (json_parse(text.buf, out))
		json_parse("{\"error\":{\"class\":\"GenericError\",\"desc\":\"unreadable reply\"}}", out);
	sb_free(&text);
	sb_free(&r.val);
}

/* Does the reply meet the expectation? Fills what was expected and what was observed, in words. */
static int meets(const struct jval *expect, const struct jval *reply, char *want, char *got, size_t len, char *err, size_t errlen)
{
	const struct jval *ret = json_get(reply, "return");
	const struct jval *error = json_get(reply, "error");
	const char *cls = "", *desc = "";
	if (error) {
		json_str(error, "class", &cls);
		json_str(error, "desc", &desc);
		snprintf(got, len, "%s (%s)", cls, desc);
	} else {
		snprintf(got, len, "success");
	}
	const char *errno_want;
	if (expect && !json_str(expect, "error", &errno_want)) {
		snprintf(want, len, "%s", errno_want);
		return error && !strcmp(cls, errno_want);
	}
	const struct jval *value = expect ? json_get(expect, "value") : NULL;
	if (!value) {
		snprintf(want, len, "success");
		return !error;
	}
	if (error)
		return 0;
	static const char *const ops[] = { "equals", "atLeast", "atMost" };
	for (size_t i = 0; i < 3; i++) {
		const struct jval *bound = json_get(expect, ops[i]);
		if (!bound)
			continue;
		double v = eval(value, ret, err, errlen);
		double w = eval(bound, ret, err, errlen);
		snprintf(want, len, "%s%.15g", i == 0 ? "" : i == 1 ? ">= " : "<= ", w);
		snprintf(got, len, "%.15g", v);
		if (err[0])
			return 0;
		return i == 0 ? fabs(v - w) < 0.5 : i == 1 ? v >= w : v <= w;
	}
	snprintf(err, errlen, "\"expect\" with \"value\" needs \"equals\", \"atLeast\" or \"atMost\"");
	return 0;
}

static void save_vars(const struct jval *save, const struct jval *ret)
{
	for (int i = 0; save && save->type == J_OBJ && i < save->n; i++) {
		const struct jval *path = &save->items[i];
		const struct jval *v = path->type == J_STR ? at_path(ret, path->str, strlen(path->str)) : NULL;
		if (!v)
			continue;
		struct sbuf text;
		sb_init(&text);
		json_write(&text, v);
		set_var(save->keys[i], text.buf);
		sb_free(&text);
	}
}

static int count_checks(FILE *f)
{
	char line[MAX_STEP_LINE];
	int n = 0;
	while (fgets(line, sizeof(line), f))
		n += line[strspn(line, " \t")] != '#' && strstr(line, "\"check\"") != NULL;
	rewind(f);
	return n;
}

static int bail(int lineno, const char *fmt, const char *what)
{
	printf("Bail out! step at line %d: ", lineno);
	printf(fmt, what);
	printf("\n");
	fflush(stdout);
	return 2;
}

/* One step line; returns 0 to go on, 1 when a check failed, 2 to stop. */
static int run_step(const char *text, int lineno, int *checkno)
{
	char err[300] = "";
	struct sbuf line;
	sb_init(&line);
	if (substitute(text, &line, err, sizeof(err))) {
		sb_free(&line);
		return bail(lineno, "%s", err);
	}
	struct jval step;
	const char *perr = json_parse(line.buf, &step);
	sb_free(&line);
	if (perr)
		return bail(lineno, "not JSON: %s", perr);
	if (step.type != J_OBJ) {
		json_free(&step);
		return bail(lineno, "%s", "a step is a JSON object");
	}
	const char *note, *cmd, *check = NULL, *known = NULL;
	uint64_t sleep_ms = 0, wait_ms = 0;
	if (!json_str(&step, "note", &note))
		printf("# %s\n", note);
	if (!json_u64(&step, "sleepMs", &sleep_ms))
		usleep((useconds_t)(sleep_ms * 1000));
	if (json_str(&step, "execute", &cmd)) {
		json_free(&step);
		return 0;
	}
	json_str(&step, "check", &check);
	json_str(&step, "knownDefect", &known);
	json_u64(&step, "waitMs", &wait_ms);
	bool at_rest = false;
	json_bool(&step, "atRest", &at_rest);
	char before[1200] = "";
	const struct jval *args = json_get(&step, "arguments");
	static const struct jval empty = { .type = J_OBJ };
	const struct jval *expect = json_get(&step, "expect");
	char want[400], got[1200];
	struct jval reply;
	long long deadline = now_ms() + (long long)wait_ms;
	int ok;
	for (;;) {
		run_command(cmd, args ? args : &empty, &reply);
		err[0] = 0;
		ok = meets(expect, &reply, want, got, sizeof(want), err, sizeof(err));
		if (ok || err[0] || now_ms() >= deadline)
			break;
		/* At rest: the barrier ran, and what it observes did not change since the last one. */
		bool barrier = at_path(json_get(&reply, "return"), "rcuBarrier.us", 13) != NULL;
		if (at_rest && barrier && before[0] && !strcmp(before, got))
			break;
		snprintf(before, sizeof before, "%s", barrier ? got : "");
		json_free(&reply);
		usleep(at_rest && barrier ? 0 : 200000);
	}
	int rc = 0;
	if (err[0]) {
		rc = bail(lineno, "%s", err);
	} else if (check) {
		++*checkno;
		printf("%s %d %s\n", ok ? "ok" : "not ok", *checkno, check);
		if (!ok) {
			printf("# expected %s, observed %s\n", want, got);
			if (known)
				printf("# known defect: %s\n", known);
			rc = 1;
		}
		const struct jval *excerpt = at_path(json_get(&reply, "return"), "excerpt", 7);
		for (int i = 0; !ok && excerpt && excerpt->type == J_ARR && i < excerpt->n; i++)
			if (excerpt->items[i].type == J_STR)
				printf("# | %s\n", excerpt->items[i].str);
	} else if (!ok) {
		printf("Bail out! step at line %d (%s): expected %s, observed %s\n", lineno, cmd, want, got);
		rc = 2;
	}
	if (rc != 2)
		save_vars(json_get(&step, "save"), json_get(&reply, "return"));
	fflush(stdout);
	json_free(&reply);
	json_free(&step);
	return rc;
}

static void stop_workers(void)
{
	/* Workers are our children: a worker-list names them, and SIGKILL ends them with the runner. */
	struct jval reply;
	static const struct jval empty = { .type = J_OBJ };
	run_command("worker-list", &empty, &reply);
	const struct jval *list = json_get(&reply, "return");
	for (int i = 0; list && list->type == J_ARR && i < list->n; i++) {
		uint64_t pid;
		bool alive;
		if (!json_u64(&list->items[i], "pid", &pid) && !json_bool(&list->items[i], "alive", &alive) && alive)
			kill((pid_t)pid, SIGKILL);
	}
	json_free(&reply);
}

int standalone_main(int argc, char **argv)
{
	if (argc < 3 || !strcmp(argv[2], "--help")) {
		fprintf(stderr, "usage: tcelab-agent run STEPS [name=value ...]\n"
				"  runs the steps in STEPS (one JSON object per line) and prints KTAP; exit 0 all checks passed,\n"
				"  1 a check failed, 2 the steps could not run\n");
		return 2;
	}
	for (int i = 3; i < argc; i++) {
		char *eq = strchr(argv[i], '=');
		if (!eq || eq == argv[i]) {
			fprintf(stderr, "tcelab-agent run: argument \"%s\" is not name=value\n", argv[i]);
			return 2;
		}
		*eq = 0;
		const char *value = eq + 1;
		char *end;
		strtod(value, &end);
		struct sbuf json;
		sb_init(&json);
		if (*value && !*end && !(value[0] == '0' && value[1]))
			sb_raw(&json, value);
		else
			sb_jstr(&json, value); /* strings, and numbers with a leading 0 (PCI addresses) */
		set_var(argv[i], json.buf);
		sb_free(&json);
	}
	FILE *f = fopen(argv[2], "r");
	if (!f) {
		fprintf(stderr, "tcelab-agent run: cannot read %s: %s\n", argv[2], strerror(errno));
		return 2;
	}
	kmsg_fd = open("/dev/kmsg", O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	if (kmsg_fd >= 0)
		lseek(kmsg_fd, 0, SEEK_END);
	struct utsname u;
	uname(&u);
	printf("KTAP version 1\n# tcelab-agent run %s on %s %s %s, %ld-byte pages\n1..%d\n", argv[2], u.sysname, u.release, u.machine,
	       sysconf(_SC_PAGESIZE), count_checks(f));
	fflush(stdout);
	char text[MAX_STEP_LINE];
	int lineno = 0, checkno = 0, failed = 0, rc = 0;
	while (rc != 2 && fgets(text, sizeof(text), f)) {
		lineno++;
		char *p = text;
		while (*p == ' ' || *p == '\t')
			p++;
		if (*p == '#' || *p == '\n' || !*p)
			continue;
		rc = run_step(p, lineno, &checkno);
		failed += rc == 1;
	}
	fclose(f);
	stop_workers();
	if (rc == 2)
		return 2;
	printf("# %d of %d checks failed\n", failed, checkno);
	return failed ? 1 : 0;
}

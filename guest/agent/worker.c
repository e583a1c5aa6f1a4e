/*
 * A VFIO worker: one process that owns a container and a group, allocates
 * memory regions, pre-registers them (VFIO_IOMMU_SPAPR_REGISTER_MEMORY),
 * creates and removes DMA windows and maps DMA. It is the "userspace tool"
 * whose exit, fd closes and forked children the host checks pin release
 * against. Requests arrive as {"op", "args"} lines from the agent.
 */
#include "agent.h"
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/vfio.h>

#define MAX_REGIONS 64
#define MAX_WINDOWS 8

struct region {
	int id;
	void *addr;
	uint64_t size;
	int hugetlb;
	int registered;
};

static int container_fd = -1, group_fd = -1, group_no = -1;
static struct region regions[MAX_REGIONS];
static int next_region = 1;
static uint64_t windows[MAX_WINDOWS];
static uint64_t window_sizes[MAX_WINDOWS];
static int window_shift[MAX_WINDOWS];
static pid_t holders[16];
static int nholders;
/* The socket to the agent (to the worker, in a foreign holder): a holder the worker forks must not keep it open. */
static int agent_fd = -1;
/* The code an "exit" operation asked for. */
static int exit_code;

int worker_group_fd(void)
{
	return group_fd;
}

static int need_container(struct reply *r)
{
	if (container_fd < 0)
		return fail(r, "EBADF", "no container open in this worker (run 'open' first, or it was closed)");
	return 0;
}

/*
 * An ioctl's answer as measured: 0 is success; -1 fills the reply with its errno. Any other value is reported as it
 * is, class "ERETURN+<value>" with the errno beside it: an ioctl that fails with a positive return and no errno is a
 * defect of its own (defect 5: VFIO sPAPR returns the 1 of `a || b` from its parameter checks), which a scenario must
 * be able to tell from -1 and EINVAL.
 */
static char return_class[32];

static int ioctl_answer(struct reply *r, long ret, int err, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int ioctl_answer(struct reply *r, long ret, int err, const char *fmt, ...)
{
	if (ret == 0)
		return 0;
	char what[400];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	if (ret == -1)
		return fail_errno(r, err, "%s", what);
	snprintf(return_class, sizeof(return_class), "ERETURN%+ld", ret);
	return fail(r, return_class, "%s: returned %ld with errno %d (%s): an ioctl fails with -1 and an errno", what, ret, err,
		    err ? errno_name(err) : "none");
}

/* ioctl(2) on the container, with errno cleared first: a positive return reports errno 0 when the kernel set none. */
static long container_ioctl(unsigned long request, void *arg, int *err)
{
	errno = 0;
	long ret = ioctl(container_fd, request, arg);
	*err = errno;
	return ret;
}

static struct region *get_region(const struct jval *args, struct reply *r)
{
	uint64_t id;
	int rc = json_u64(args, "region", &id);
	if (rc) {
		bad_arg(r, "region", rc, "a region id from alloc");
		return NULL;
	}
	for (int i = 0; i < MAX_REGIONS; i++)
		if (regions[i].id == (int)id && regions[i].addr)
			return &regions[i];
	fail(r, "ENOENT", "no region %llu in this worker", (unsigned long long)id);
	return NULL;
}

static void info_json(struct sbuf *s)
{
	struct vfio_iommu_spapr_tce_info info = { .argsz = sizeof(info) };
	if (ioctl(container_fd, VFIO_IOMMU_SPAPR_TCE_GET_INFO, &info)) {
		sb_fmt(s, "{\"error\":\"%s\"}", errno_name(errno));
		return;
	}
	sb_fmt(s, "{\"flags\":%u,\"ddwSupported\":%s,\"dma32WindowStart\":\"0x%x\",\"dma32WindowSize\":\"0x%x\","
		  "\"ddw\":{\"pageSizes\":\"0x%llx\",\"maxDynamicWindows\":%u,\"levels\":%u}}",
	       info.flags, info.flags & VFIO_IOMMU_SPAPR_INFO_DDW ? "true" : "false", info.dma32_window_start, info.dma32_window_size,
	       (unsigned long long)info.ddw.pgsizes, info.ddw.max_dynamic_windows_supported, info.ddw.levels);
}

static enum outcome op_open(const struct jval *args, struct reply *r)
{
	uint64_t group;
	int rc = json_u64(args, "group", &group);
	if (rc || group > 100000)
		return bad_arg(r, "group", rc ? rc : -2, "an IOMMU group number");
	if (container_fd >= 0 || group_fd >= 0)
		return fail(r, "EEXIST", "this worker already has a container or group open");
	/* "iommu": "v1" opens a VFIO_SPAPR_TCE_IOMMU container (no DDW, no pre-registration): a seeded fault's way in. */
	const char *type_name = "v2";
	rc = json_str(args, "iommu", &type_name);
	if (rc == -2 || (strcmp(type_name, "v1") && strcmp(type_name, "v2")))
		return bad_arg(r, "iommu", -2, "\"v1\" or \"v2\"");
	unsigned long iommu_type = strcmp(type_name, "v1") ? VFIO_SPAPR_TCE_v2_IOMMU : VFIO_SPAPR_TCE_IOMMU;
	int c = open("/dev/vfio/vfio", O_RDWR);
	if (c < 0)
		return fail_errno(r, errno, "open /dev/vfio/vfio");
	if (ioctl(c, VFIO_GET_API_VERSION) != VFIO_API_VERSION) {
		close(c);
		return fail(r, "EINVAL", "unexpected VFIO API version");
	}
	if (ioctl(c, VFIO_CHECK_EXTENSION, VFIO_SPAPR_TCE_v2_IOMMU) <= 0) {
		close(c);
		return fail(r, "ENODEV", "VFIO_SPAPR_TCE_v2_IOMMU is not supported (is vfio_iommu_spapr_tce loaded?)");
	}
	char path[64];
	snprintf(path, sizeof(path), "/dev/vfio/%llu", (unsigned long long)group);
	int g = open(path, O_RDWR);
	if (g < 0) {
		int e = errno;
		close(c);
		return fail_errno(r, e, "open %s", path);
	}
	struct vfio_group_status st = { .argsz = sizeof(st) };
	if (ioctl(g, VFIO_GROUP_GET_STATUS, &st) || !(st.flags & VFIO_GROUP_FLAGS_VIABLE)) {
		close(g);
		close(c);
		return fail(r, "EPERM", "group %llu is not viable: every device in it must be bound to vfio-pci or unbound", (unsigned long long)group);
	}
	if (ioctl(g, VFIO_GROUP_SET_CONTAINER, &c)) {
		int e = errno;
		close(g);
		close(c);
		return fail_errno(r, e, "VFIO_GROUP_SET_CONTAINER");
	}
	if (ioctl(c, VFIO_SET_IOMMU, iommu_type)) {
		int e = errno;
		close(g);
		close(c);
		return fail_errno(r, e, "VFIO_SET_IOMMU(%s)", iommu_type == VFIO_SPAPR_TCE_IOMMU ? "VFIO_SPAPR_TCE_IOMMU" : "VFIO_SPAPR_TCE_v2_IOMMU");
	}
	container_fd = c;
	group_fd = g;
	group_no = (int)group;
	sb_fmt(&r->val, "{\"group\":%d,\"pid\":%d,\"info\":", group_no, getpid());
	info_json(&r->val);
	sb_raw(&r->val, "}");
	return REPLY_OK;
}

static enum outcome op_info(const struct jval *args, struct reply *r)
{
	(void)args;
	if (need_container(r))
		return REPLY_ERROR;
	struct vfio_iommu_spapr_tce_info info = { .argsz = sizeof(info) };
	int err;
	if (ioctl_answer(r, container_ioctl(VFIO_IOMMU_SPAPR_TCE_GET_INFO, &info, &err), err, "VFIO_IOMMU_SPAPR_TCE_GET_INFO"))
		return REPLY_ERROR;
	info_json(&r->val);
	return REPLY_OK;
}

/*
 * Enough free, unreserved huge pages in the pool for `size` bytes: the pool grows by what is missing. Reserved pages
 * (mapped by an earlier region, not yet touched) are counted free but are not. HugePages_Rsvd is taken only when it is
 * within the pool: measured on 6.12.107, right after a registered hugetlb region is unregistered and unmapped it reads
 * 2^64 - 8 (a reservation count gone below zero) until the deferred unpin has run.
 */
static void reserve_huge_pages(uint64_t size)
{
	long long hp = kv_value("/proc/meminfo", "Hugepagesize") * 1024;
	long long total = kv_value("/proc/meminfo", "HugePages_Total");
	long long free_pages = kv_value("/proc/meminfo", "HugePages_Free");
	long long rsvd = kv_value("/proc/meminfo", "HugePages_Rsvd");
	if (rsvd < 0 || rsvd > free_pages)
		rsvd = 0;
	long long need = (long long)(size / (uint64_t)hp) - (free_pages - rsvd);
	if (need > 0) {
		char text[32];
		snprintf(text, sizeof(text), "%lld", total + need);
		write_text("/proc/sys/vm/nr_hugepages", text);
	}
}

static enum outcome op_alloc(const struct jval *args, struct reply *r)
{
	uint64_t size;
	bool huge = false;
	int rc = json_u64(args, "size", &size);
	if (rc || size == 0 || size > (64ULL << 30))
		return bad_arg(r, "size", rc ? rc : -2, "bytes, 1 to 64 GiB");
	rc = json_bool(args, "hugetlb", &huge);
	if (rc == -2)
		return bad_arg(r, "hugetlb", rc, "true or false");
	struct region *slot = NULL;
	for (int i = 0; i < MAX_REGIONS; i++)
		if (!regions[i].addr) {
			slot = &regions[i];
			break;
		}
	if (!slot)
		return fail(r, "ENOSPC", "at most %d regions per worker", MAX_REGIONS);
	if (huge) {
		long long hp = kv_value("/proc/meminfo", "Hugepagesize") * 1024;
		if (hp <= 0)
			return fail(r, "EOPNOTSUPP", "the kernel has no huge pages");
		if (size % (uint64_t)hp)
			return fail(r, "EINVAL", "a hugetlb region must be a multiple of the huge page size (%lld bytes)", hp);
	}
	void *p = MAP_FAILED;
	/* Huge pages still pinned by an unregistration whose unpin is deferred come free about a second later: try again. */
	for (int attempt = 0; attempt < 30 && p == MAP_FAILED; attempt++) {
		if (huge)
			reserve_huge_pages(size);
		p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | (huge ? MAP_HUGETLB : 0), -1, 0);
		if (p == MAP_FAILED && (!huge || errno != ENOMEM))
			break;
		if (p == MAP_FAILED)
			usleep(100000);
	}
	if (p == MAP_FAILED)
		return fail_errno(r, errno, "mmap %llu bytes%s", (unsigned long long)size, huge ? " (hugetlb)" : "");
	memset(slot, 0, sizeof(*slot));
	slot->id = next_region++;
	slot->addr = p;
	slot->size = size;
	slot->hugetlb = huge;
	sb_fmt(&r->val, "{\"region\":%d,\"vaddr\":\"0x%llx\",\"size\":%llu,\"hugetlb\":%s}", slot->id, (unsigned long long)(uintptr_t)p,
	       (unsigned long long)size, huge ? "true" : "false");
	return REPLY_OK;
}

static enum outcome op_free(const struct jval *args, struct reply *r)
{
	struct region *g = get_region(args, r);
	if (!g)
		return REPLY_ERROR;
	munmap(g->addr, g->size);
	memset(g, 0, sizeof(*g));
	sb_raw(&r->val, "{}");
	return REPLY_OK;
}

/* (region, offset, size) → the ioctl's vaddr/size: offset and size let a test
 * ask for deliberately misaligned ranges. */
static int region_range(const struct jval *args, struct reply *r, struct region **g, uint64_t *vaddr, uint64_t *size)
{
	uint64_t off = 0;
	*g = get_region(args, r);
	if (!*g)
		return -1;
	int rc = json_u64(args, "offset", &off);
	if (rc == -2 || off >= (*g)->size)
		return bad_arg(r, "offset", -2, "bytes inside the region");
	*size = (*g)->size - off;
	rc = json_u64(args, "size", size);
	if (rc == -2 || off + *size > (*g)->size || *size == 0)
		return bad_arg(r, "size", -2, "bytes inside the region");
	*vaddr = (uint64_t)(uintptr_t)(*g)->addr + off;
	return 0;
}

static enum outcome op_register(const struct jval *args, struct reply *r, bool reg)
{
	struct region *g;
	uint64_t vaddr, size;
	if (need_container(r) || region_range(args, r, &g, &vaddr, &size))
		return REPLY_ERROR;
	struct vfio_iommu_spapr_register_memory m = { .argsz = sizeof(m), .vaddr = vaddr, .size = size };
	int err;
	long ret = container_ioctl(reg ? VFIO_IOMMU_SPAPR_REGISTER_MEMORY : VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY, &m, &err);
	if (ioctl_answer(r, ret, err, "%s vaddr 0x%llx size 0x%llx", reg ? "VFIO_IOMMU_SPAPR_REGISTER_MEMORY" : "VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY",
			 (unsigned long long)vaddr, (unsigned long long)size))
		return REPLY_ERROR;
	g->registered = reg;
	sb_fmt(&r->val, "{\"region\":%d,\"vaddr\":\"0x%llx\",\"size\":%llu}", g->id, (unsigned long long)vaddr, (unsigned long long)size);
	return REPLY_OK;
}

static enum outcome op_create_window(const struct jval *args, struct reply *r)
{
	uint64_t shift, wsize, levels = 1;
	if (need_container(r))
		return REPLY_ERROR;
	int rc = json_u64(args, "pageShift", &shift);
	if (rc || shift < 12 || shift > 34)
		return bad_arg(r, "pageShift", rc ? rc : -2, "12 to 34 (4K to 16G pages)");
	rc = json_u64(args, "windowSize", &wsize);
	if (rc || wsize == 0)
		return bad_arg(r, "windowSize", rc ? rc : -2, "bytes, a power of two");
	rc = json_u64(args, "levels", &levels);
	if (rc == -2 || levels < 1 || levels > 5)
		return bad_arg(r, "levels", -2, "1 to 5");
	struct vfio_iommu_spapr_tce_create c = { .argsz = sizeof(c), .page_shift = (uint32_t)shift, .window_size = wsize, .levels = (uint32_t)levels };
	int err;
	if (ioctl_answer(r, container_ioctl(VFIO_IOMMU_SPAPR_TCE_CREATE, &c, &err), err, "VFIO_IOMMU_SPAPR_TCE_CREATE page_shift %llu size 0x%llx levels %llu",
			 (unsigned long long)shift, (unsigned long long)wsize, (unsigned long long)levels))
		return REPLY_ERROR;
	for (int i = 0; i < MAX_WINDOWS; i++)
		if (!windows[i]) {
			windows[i] = c.start_addr;
			window_sizes[i] = wsize;
			window_shift[i] = (int)shift;
			break;
		}
	sb_fmt(&r->val, "{\"startAddr\":\"0x%016llx\",\"windowSize\":\"0x%llx\",\"pageShift\":%llu,\"levels\":%llu}",
	       (unsigned long long)c.start_addr, (unsigned long long)wsize, (unsigned long long)shift, (unsigned long long)levels);
	return REPLY_OK;
}

static enum outcome op_remove_window(const struct jval *args, struct reply *r)
{
	uint64_t start;
	if (need_container(r))
		return REPLY_ERROR;
	int rc = json_u64(args, "startAddr", &start);
	if (rc)
		return bad_arg(r, "startAddr", rc, "the window's start address (\"0x...\")");
	struct vfio_iommu_spapr_tce_remove m = { .argsz = sizeof(m), .start_addr = start };
	int err;
	if (ioctl_answer(r, container_ioctl(VFIO_IOMMU_SPAPR_TCE_REMOVE, &m, &err), err, "VFIO_IOMMU_SPAPR_TCE_REMOVE 0x%llx", (unsigned long long)start))
		return REPLY_ERROR;
	for (int i = 0; i < MAX_WINDOWS; i++)
		if (windows[i] == start)
			windows[i] = 0;
	sb_fmt(&r->val, "{\"startAddr\":\"0x%016llx\"}", (unsigned long long)start);
	return REPLY_OK;
}

static enum outcome op_map(const struct jval *args, struct reply *r, bool map)
{
	uint64_t iova, vaddr = 0, size;
	struct region *g = NULL;
	if (need_container(r))
		return REPLY_ERROR;
	int rc = json_u64(args, "iova", &iova);
	if (rc)
		return bad_arg(r, "iova", rc, "an I/O virtual address");
	if (map) {
		if (region_range(args, r, &g, &vaddr, &size))
			return REPLY_ERROR;
		/* "perm": what the device may do with the memory: read it (to the device), write it, or both (the default). */
		const char *perm = "rw";
		rc = json_str(args, "perm", &perm);
		uint32_t flags = !strcmp(perm, "rw")	  ? VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE
				 : !strcmp(perm, "read")  ? VFIO_DMA_MAP_FLAG_READ
				 : !strcmp(perm, "write") ? VFIO_DMA_MAP_FLAG_WRITE
							  : 0;
		if (rc == -2 || !flags)
			return bad_arg(r, "perm", -2, "\"rw\", \"read\" (the device reads it) or \"write\" (the device writes it)");
		struct vfio_iommu_type1_dma_map m = { .argsz = sizeof(m), .flags = flags, .vaddr = vaddr, .iova = iova, .size = size };
		int err;
		if (ioctl_answer(r, container_ioctl(VFIO_IOMMU_MAP_DMA, &m, &err), err, "VFIO_IOMMU_MAP_DMA iova 0x%llx vaddr 0x%llx size 0x%llx",
				 (unsigned long long)iova, (unsigned long long)vaddr, (unsigned long long)size))
			return REPLY_ERROR;
	} else {
		rc = json_u64(args, "size", &size);
		if (rc)
			return bad_arg(r, "size", rc, "bytes");
		struct vfio_iommu_type1_dma_unmap m = { .argsz = sizeof(m), .iova = iova, .size = size };
		int err;
		if (ioctl_answer(r, container_ioctl(VFIO_IOMMU_UNMAP_DMA, &m, &err), err, "VFIO_IOMMU_UNMAP_DMA iova 0x%llx size 0x%llx",
				 (unsigned long long)iova, (unsigned long long)size))
			return REPLY_ERROR;
	}
	sb_fmt(&r->val, "{\"iova\":\"0x%llx\",\"size\":%llu}", (unsigned long long)iova, (unsigned long long)size);
	return REPLY_OK;
}

static enum outcome op_close(struct reply *r, int *fd, const char *what)
{
	if (*fd < 0)
		return fail(r, "EBADF", "the %s is not open", what);
	close(*fd);
	*fd = -1;
	sb_raw(&r->val, "{}");
	return REPLY_OK;
}

/* The seeded leak: a child inherits the container and group fds and lives on. */
static enum outcome op_fork_holder(const struct jval *args, struct reply *r, int agent_fd)
{
	(void)args;
	if (container_fd < 0 && group_fd < 0)
		return fail(r, "EBADF", "nothing to hold: no container or group open");
	if (nholders >= 16)
		return fail(r, "ENOSPC", "at most 16 holders");
	pid_t pid = fork();
	if (pid < 0)
		return fail_errno(r, errno, "fork");
	if (pid == 0) {
		close(agent_fd);
		for (;;)
			pause();
	}
	holders[nholders++] = pid;
	sb_fmt(&r->val, "{\"pid\":%d}", pid);
	return REPLY_OK;
}

/*
 * Seeded fault for a userspace tool the worker did not start (the inner QEMU
 * of a nested lab host): duplicate another process's fds into this worker
 * with pidfd_getfd(2), as if they had been passed over a unix socket. The
 * duplicates reference the same open files, so the container and group stay
 * alive after that process exits.
 */
static int adopted[16];
static int nadopted;

static enum outcome op_adopt_fds(const struct jval *args, struct reply *r)
{
	uint64_t pid;
	int rc = json_u64(args, "pid", &pid);
	if (rc || pid < 2)
		return bad_arg(r, "pid", rc ? rc : -2, "a process id");
	const struct jval *fds = json_get(args, "fds");
	if (!fds || fds->type != J_ARR || fds->n < 1 || fds->n > 16 - nadopted)
		return bad_arg(r, "fds", fds ? -2 : -1, "an array of fd numbers (at most 16 adopted in all)");
	int pidfd = (int)syscall(SYS_pidfd_open, (pid_t)pid, 0);
	if (pidfd < 0)
		return fail_errno(r, errno, "pidfd_open %llu", (unsigned long long)pid);
	sb_raw(&r->val, "{\"fds\":[");
	for (int i = 0; i < fds->n; i++) {
		if (fds->items[i].type != J_NUM || fds->items[i].num < 0) {
			close(pidfd);
			return bad_arg(r, "fds", -2, "an array of fd numbers");
		}
		int fd = (int)syscall(SYS_pidfd_getfd, pidfd, (int)fds->items[i].num, 0);
		if (fd < 0) {
			int e = errno;
			close(pidfd);
			return fail_errno(r, e, "pidfd_getfd %llu fd %d", (unsigned long long)pid, (int)fds->items[i].num);
		}
		adopted[nadopted++] = fd;
		sb_fmt(&r->val, "%s%d", i ? "," : "", fd);
	}
	close(pidfd);
	sb_raw(&r->val, "]}");
	return REPLY_OK;
}

static enum outcome op_enable(const struct jval *args, struct reply *r)
{
	(void)args;
	if (need_container(r))
		return REPLY_ERROR;
	int err;
	if (ioctl_answer(r, container_ioctl(VFIO_IOMMU_ENABLE, NULL, &err), err, "VFIO_IOMMU_ENABLE"))
		return REPLY_ERROR;
	sb_raw(&r->val, "{}");
	return REPLY_OK;
}

/* The operations of VFIO_EEH_PE_OP, by the names a request gives them. */
static const struct {
	const char *name;
	unsigned op;
} eeh_operations[] = {
	{ "disable", VFIO_EEH_PE_DISABLE },
	{ "enable", VFIO_EEH_PE_ENABLE },
	{ "unfreeze-io", VFIO_EEH_PE_UNFREEZE_IO },
	{ "unfreeze-dma", VFIO_EEH_PE_UNFREEZE_DMA },
	{ "get-state", VFIO_EEH_PE_GET_STATE },
	{ "reset-deactivate", VFIO_EEH_PE_RESET_DEACTIVATE },
	{ "reset-hot", VFIO_EEH_PE_RESET_HOT },
	{ "reset-fundamental", VFIO_EEH_PE_RESET_FUNDAMENTAL },
	{ "configure", VFIO_EEH_PE_CONFIGURE },
};

/*
 * {"op"}: one VFIO_EEH_PE_OP on the container. Its answer is a value (get-state returns the PE's state), so the reply
 * is {"op", "ret"} for any return of 0 or more, with VFIO_CHECK_EXTENSION(VFIO_EEH) beside it; -1 is its errno.
 */
static enum outcome op_eeh(const struct jval *args, struct reply *r)
{
	const char *name;
	if (need_container(r))
		return REPLY_ERROR;
	int rc = json_str(args, "op", &name);
	size_t i = 0;
	while (!rc && i < sizeof(eeh_operations) / sizeof(eeh_operations[0]) && strcmp(eeh_operations[i].name, name))
		i++;
	if (rc || i == sizeof(eeh_operations) / sizeof(eeh_operations[0]))
		return bad_arg(r, "op", rc ? rc : -2, "an EEH operation: disable, enable, unfreeze-io, unfreeze-dma, get-state, reset-…, configure");
	long extension = ioctl(container_fd, VFIO_CHECK_EXTENSION, VFIO_EEH);
	struct vfio_eeh_pe_op op = { .argsz = sizeof(op), .op = eeh_operations[i].op };
	int err;
	long ret = container_ioctl(VFIO_EEH_PE_OP, &op, &err);
	if (ret < 0)
		return ioctl_answer(r, ret, err, "VFIO_EEH_PE_OP %s (VFIO_CHECK_EXTENSION(VFIO_EEH) = %ld)", name, extension) ? REPLY_ERROR : REPLY_OK;
	sb_fmt(&r->val, "{\"op\":\"%s\",\"ret\":%ld,\"eehExtension\":%ld}", name, ret, extension);
	return REPLY_OK;
}

/*
 * Another holder of this worker's container: a process (or, as a control, a thread) that issues the same operations
 * from its own mm. "fork": a child of the worker (a fork has a new mm, a copy of the worker's, regions included);
 * "scm-rights": a fresh program (exec'd: nothing of the worker's memory) that receives the container fd over a unix
 * socket; "pidfd-getfd": a fresh program that takes it with pidfd_getfd(2); "thread": a thread of the worker (the same
 * mm). Requests reach it through the worker ("foreign": {"foreign", "op", "args"}), on a socketpair it serves as the
 * worker serves the agent; it dies with the worker (PR_SET_PDEATHSIG).
 */
#define MAX_FOREIGN 8
struct foreign {
	int id;
	pid_t pid; /* 0 for a thread */
	pthread_t thread;
	int sock; /* the worker's end of the socketpair */
	const char *how;
};
static struct foreign foreigns[MAX_FOREIGN];
static int next_foreign = 1;
static const char *const foreign_hows[] = { "fork", "scm-rights", "pidfd-getfd", "thread" };

static bool serve(int fd, bool in_thread);

static void *serve_thread(void *arg)
{
	serve((int)(intptr_t)arg, true);
	return NULL;
}

/* Sends one request line to a foreign holder and reads its one reply line into `line`; -1 when it is gone. */
static int foreign_roundtrip(struct foreign *f, const char *op, const struct jval *args, struct sbuf *line)
{
	struct sbuf req;
	sb_init(&req);
	sb_raw(&req, "{\"op\":");
	sb_jstr(&req, op);
	sb_raw(&req, ",\"args\":");
	if (args)
		json_write(&req, args);
	else
		sb_raw(&req, "{}");
	sb_raw(&req, "}\n");
	ssize_t n = write(f->sock, req.buf, req.len);
	sb_free(&req);
	if (n < 0 && errno != EPIPE)
		return -1;
	char c;
	while (read(f->sock, &c, 1) == 1) {
		if (c == '\n')
			return 0;
		char one[2] = { c, 0 };
		sb_raw(line, one);
	}
	return -1;
}

static struct foreign *get_foreign(const struct jval *args, struct reply *r)
{
	uint64_t id;
	int rc = json_u64(args, "foreign", &id);
	if (rc) {
		bad_arg(r, "foreign", rc, "a foreign holder's id from spawn-foreign");
		return NULL;
	}
	for (int i = 0; i < MAX_FOREIGN; i++)
		if (foreigns[i].id == (int)id && foreigns[i].sock >= 0)
			return &foreigns[i];
	fail(r, "ENOENT", "no foreign holder %llu in this worker", (unsigned long long)id);
	return NULL;
}

/* Ends a foreign holder: a process by signal, a thread by closing its socket; waited for either way. */
static void foreign_end(struct foreign *f, int signo, struct sbuf *how_it_ended)
{
	close(f->sock);
	f->sock = -1;
	if (!f->pid) {
		pthread_join(f->thread, NULL);
		if (how_it_ended)
			sb_raw(how_it_ended, "\"thread\":true");
		return;
	}
	kill(f->pid, signo);
	int st = 0;
	for (int waited = 0; waited < 10000 && waitpid(f->pid, &st, WNOHANG) != f->pid; waited += 10)
		usleep(10000);
	if (how_it_ended)
		sb_fmt(how_it_ended, WIFSIGNALED(st) ? "\"signal\":%d" : "\"exitCode\":%d", WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
}

/* The child of spawn-foreign: it keeps the container fd (fork) or execs a fresh program that gets it (scm-rights, pidfd-getfd). */
static void foreign_child(int sock, const char *how, pid_t owner)
{
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	for (int i = 0; i < MAX_FOREIGN; i++)
		if (foreigns[i].sock >= 0 && foreigns[i].id)
			close(foreigns[i].sock);
	memset(foreigns, 0, sizeof(foreigns));
	nholders = 0;
	if (!strcmp(how, "fork")) {
		close(agent_fd);
		_exit(serve(sock, false) ? exit_code : 0);
	}
	/* A fresh program: the socket on fd 3 and nothing else of the worker's. */
	if (sock != 3 && dup2(sock, 3) < 0)
		_exit(127);
	close_range(4, ~0U, 0);
	char owner_text[16], fd_text[16];
	snprintf(owner_text, sizeof(owner_text), "%d", (int)owner);
	snprintf(fd_text, sizeof(fd_text), "%d", container_fd);
	execl("/proc/self/exe", "tcelab-agent", "foreign", how, owner_text, fd_text, (char *)NULL);
	_exit(127);
}

/* {"how"}: starts a foreign holder of the container; {"foreign", "pid", "how"} once it answers its first request. */
static enum outcome op_spawn_foreign(const struct jval *args, struct reply *r)
{
	const char *how;
	if (need_container(r))
		return REPLY_ERROR;
	int rc = json_str(args, "how", &how);
	size_t k = 0;
	while (!rc && k < sizeof(foreign_hows) / sizeof(foreign_hows[0]) && strcmp(foreign_hows[k], how))
		k++;
	if (rc || k == sizeof(foreign_hows) / sizeof(foreign_hows[0]))
		return bad_arg(r, "how", rc ? rc : -2, "\"fork\", \"scm-rights\", \"pidfd-getfd\" or \"thread\"");
	how = foreign_hows[k];
	struct foreign *f = NULL;
	for (int i = 0; i < MAX_FOREIGN && !f; i++)
		if (foreigns[i].sock < 0 || !foreigns[i].id)
			f = &foreigns[i];
	if (!f)
		return fail(r, "ENOSPC", "at most %d foreign holders per worker", MAX_FOREIGN);
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv))
		return fail_errno(r, errno, "socketpair");
	memset(f, 0, sizeof(*f));
	f->how = how;
	if (!strcmp(how, "thread")) {
		int e = pthread_create(&f->thread, NULL, serve_thread, (void *)(intptr_t)sv[1]);
		if (e) {
			close(sv[0]);
			close(sv[1]);
			return fail_errno(r, e, "pthread_create");
		}
	} else {
		pid_t owner = getpid();
		f->pid = fork();
		if (f->pid < 0) {
			int e = errno;
			close(sv[0]);
			close(sv[1]);
			return fail_errno(r, e, "fork");
		}
		if (f->pid == 0) {
			close(sv[0]);
			foreign_child(sv[1], how, owner);
		}
		close(sv[1]);
		if (!strcmp(how, "scm-rights") && send_fds(sv[0], &container_fd, 1)) {
			int e = errno;
			kill(f->pid, SIGKILL);
			waitpid(f->pid, NULL, 0);
			close(sv[0]);
			return fail_errno(r, e, "sendmsg SCM_RIGHTS to pid %d", f->pid);
		}
	}
	f->id = next_foreign++;
	f->sock = sv[0];
	/* Its first answer says it holds the container (a fresh program may have failed to get it: its error comes back). */
	struct sbuf line;
	sb_init(&line);
	if (foreign_roundtrip(f, "status", NULL, &line) || strncmp(line.buf ? line.buf : "", "{\"return\"", 9)) {
		struct sbuf ended;
		sb_init(&ended);
		foreign_end(f, SIGKILL, &ended);
		fail(r, "ECHILD", "the %s holder (pid %d) did not start: %s (%s)", how, f->pid, line.len ? line.buf : "no answer", ended.buf ? ended.buf : "");
		sb_free(&ended);
		sb_free(&line);
		return REPLY_ERROR;
	}
	sb_free(&line);
	sb_fmt(&r->val, "{\"foreign\":%d,\"pid\":%d,\"how\":\"%s\"}", f->id, f->pid ? f->pid : getpid(), how);
	return REPLY_OK;
}

/* {"foreign", "op", "args"}: one operation, run in the foreign holder; its reply as it gave it. */
static enum outcome op_foreign(const struct jval *args, struct reply *r)
{
	struct foreign *f = get_foreign(args, r);
	if (!f)
		return REPLY_ERROR;
	const char *op;
	int rc = json_str(args, "op", &op);
	if (rc)
		return bad_arg(r, "op", rc, "a worker operation name");
	const struct jval *fargs = json_get(args, "args");
	if (fargs && fargs->type != J_OBJ)
		return bad_arg(r, "args", -2, "an object");
	struct sbuf line;
	sb_init(&line);
	if (foreign_roundtrip(f, op, fargs, &line)) {
		sb_free(&line);
		struct sbuf ended;
		sb_init(&ended);
		foreign_end(f, SIGKILL, &ended);
		fail(r, "ESRCH", "the %s holder %d (pid %d) died during '%s' (%s)", f->how, f->id, f->pid, op, ended.buf ? ended.buf : "");
		sb_free(&ended);
		return REPLY_ERROR;
	}
	r->val = line;
	return REPLY_RAW;
}

/* {"foreign", "signal"}: ends a foreign holder (TERM by default, or KILL) and waits for it. */
static enum outcome op_foreign_stop(const struct jval *args, struct reply *r)
{
	struct foreign *f = get_foreign(args, r);
	if (!f)
		return REPLY_ERROR;
	const char *sig = "TERM";
	int rc = json_str(args, "signal", &sig);
	if (rc == -2 || (strcmp(sig, "TERM") && strcmp(sig, "KILL")))
		return bad_arg(r, "signal", -2, "\"TERM\" or \"KILL\"");
	sb_fmt(&r->val, "{\"foreign\":%d,\"pid\":%d,", f->id, f->pid);
	foreign_end(f, strcmp(sig, "KILL") ? SIGTERM : SIGKILL, &r->val);
	sb_raw(&r->val, "}");
	return REPLY_OK;
}

static enum outcome op_status(struct reply *r)
{
	sb_fmt(&r->val, "{\"pid\":%d,\"group\":%d,\"containerOpen\":%s,\"groupOpen\":%s,\"vmLckKb\":%lld,\"vmPinKb\":%lld,\"regions\":[",
	       getpid(), group_no, container_fd >= 0 ? "true" : "false", group_fd >= 0 ? "true" : "false", proc_status_kb(getpid(), "VmLck"),
	       proc_status_kb(getpid(), "VmPin"));
	int first = 1;
	for (int i = 0; i < MAX_REGIONS; i++) {
		if (!regions[i].addr)
			continue;
		sb_fmt(&r->val, "%s{\"region\":%d,\"vaddr\":\"0x%llx\",\"size\":%llu,\"hugetlb\":%s,\"registered\":%s}", first ? "" : ",", regions[i].id,
		       (unsigned long long)(uintptr_t)regions[i].addr, (unsigned long long)regions[i].size, regions[i].hugetlb ? "true" : "false",
		       regions[i].registered ? "true" : "false");
		first = 0;
	}
	sb_raw(&r->val, "],\"windows\":[");
	first = 1;
	for (int i = 0; i < MAX_WINDOWS; i++) {
		if (!windows[i])
			continue;
		sb_fmt(&r->val, "%s{\"startAddr\":\"0x%016llx\",\"windowSize\":\"0x%llx\",\"pageShift\":%d}", first ? "" : ",",
		       (unsigned long long)windows[i], (unsigned long long)window_sizes[i], window_shift[i]);
		first = 0;
	}
	sb_raw(&r->val, "],\"holders\":[");
	for (int i = 0; i < nholders; i++)
		sb_fmt(&r->val, "%s%d", i ? "," : "", holders[i]);
	sb_raw(&r->val, "]}");
	return REPLY_OK;
}

static enum outcome op_register_memory(const struct jval *args, struct reply *r)
{
	return op_register(args, r, true);
}

static enum outcome op_unregister_memory(const struct jval *args, struct reply *r)
{
	return op_register(args, r, false);
}

static enum outcome op_map_dma(const struct jval *args, struct reply *r)
{
	return op_map(args, r, true);
}

static enum outcome op_unmap_dma(const struct jval *args, struct reply *r)
{
	return op_map(args, r, false);
}

static enum outcome op_close_container(const struct jval *args, struct reply *r)
{
	(void)args;
	return op_close(r, &container_fd, "container");
}

static enum outcome op_close_group(const struct jval *args, struct reply *r)
{
	(void)args;
	return op_close(r, &group_fd, "group");
}


static enum outcome op_fork_holder_child(const struct jval *args, struct reply *r)
{
	return op_fork_holder(args, r, agent_fd);
}

static enum outcome op_status_now(const struct jval *args, struct reply *r)
{
	(void)args;
	return op_status(r);
}

static enum outcome op_exit(const struct jval *args, struct reply *r)
{
	uint64_t code = 0;
	json_u64(args, "code", &code);
	exit_code = (int)code;
	sb_raw(&r->val, "{}");
	return REPLY_AND_EXIT;
}

/* The pattern of a seed: byte i of a buffer filled with `seed` (never all zero: zeros are what a failed DMA reads). */
static uint8_t pattern_byte(uint64_t seed, uint64_t i)
{
	uint64_t x = (seed + 1) * 0x9E3779B97F4A7C15ULL + i * 0xBF58476D1CE4E5B9ULL;
	x ^= x >> 29;
	return (uint8_t)(x | 1);
}

/* {"region", "offset", "size", "seed"} of fill and check: the bytes and the seed, or -1 with the reply filled. */
static int pattern_range(const struct jval *args, struct reply *r, struct region **g, uint64_t *vaddr, uint64_t *size, uint64_t *seed)
{
	if (region_range(args, r, g, vaddr, size))
		return -1;
	int rc = json_u64(args, "seed", seed);
	if (rc)
		return bad_arg(r, "seed", rc, "a number");
	return 0;
}

/* {"region", "offset", "size", "seed"}: fills bytes with the seed's pattern (what a copy carries, or a sentinel). */
static enum outcome op_fill(const struct jval *args, struct reply *r)
{
	struct region *g;
	uint64_t vaddr, size, seed;
	if (pattern_range(args, r, &g, &vaddr, &size, &seed))
		return REPLY_ERROR;
	uint8_t *p = (uint8_t *)(uintptr_t)vaddr;
	for (uint64_t i = 0; i < size; i++)
		p[i] = pattern_byte(seed, i);
	sb_fmt(&r->val, "{\"region\":%d,\"vaddr\":\"0x%llx\",\"size\":%llu}", g->id, (unsigned long long)vaddr, (unsigned long long)size);
	return REPLY_OK;
}

/* {"region", "offset", "size", "seed"}: whether the bytes hold the seed's pattern; if not, what they hold instead. */
static enum outcome op_check(const struct jval *args, struct reply *r)
{
	struct region *g;
	uint64_t vaddr, size, seed;
	if (pattern_range(args, r, &g, &vaddr, &size, &seed))
		return REPLY_ERROR;
	const uint8_t *p = (const uint8_t *)(uintptr_t)vaddr;
	uint64_t mismatches = 0, zeros = 0;
	long long first = -1;
	for (uint64_t i = 0; i < size; i++) {
		zeros += p[i] == 0;
		if (p[i] != pattern_byte(seed, i)) {
			if (first < 0)
				first = (long long)i;
			mismatches++;
		}
	}
	sb_fmt(&r->val, "{\"equal\":%s,\"mismatches\":%llu,\"firstMismatch\":%lld,\"zeroBytes\":%llu,\"size\":%llu}", mismatches ? "false" : "true",
	       (unsigned long long)mismatches, first, (unsigned long long)zeros, (unsigned long long)size);
	return REPLY_OK;
}

/* Every operation a worker performs; a new operation is one entry. */
static const struct {
	const char *name;
	enum outcome (*fn)(const struct jval *args, struct reply *r);
} operations[] = {
	{ "open", op_open },
	{ "info", op_info },
	{ "alloc", op_alloc },
	{ "free", op_free },
	{ "register", op_register_memory },
	{ "unregister", op_unregister_memory },
	{ "create-window", op_create_window },
	{ "remove-window", op_remove_window },
	{ "map", op_map_dma },
	{ "unmap", op_unmap_dma },
	{ "close-container", op_close_container },
	{ "close-group", op_close_group },
	{ "fork-holder", op_fork_holder_child },
	{ "adopt-fds", op_adopt_fds },
	{ "status", op_status_now },
	{ "fill", op_fill },
	{ "check", op_check },
	{ "device-open", op_device_open },
	{ "msi-enable", op_msi_enable },
	{ "dma", op_dma },
	{ "device-close", op_device_close },
	{ "enable", op_enable },
	{ "eeh", op_eeh },
	{ "spawn-foreign", op_spawn_foreign },
	{ "foreign", op_foreign },
	{ "foreign-stop", op_foreign_stop },
	{ "exit", op_exit },
};

/* Writes one reply line; false when the other end is gone. */
static bool respond(int fd, const struct reply *r, enum outcome o)
{
	struct sbuf out;
	sb_init(&out);
	reply_format(&out, r, o, NULL);
	size_t off = 0;
	while (off < out.len) {
		ssize_t n = write(fd, out.buf + off, out.len - off);
		if (n <= 0)
			break;
		off += n;
	}
	bool sent = off == out.len;
	sb_free(&out);
	return sent;
}

/* Runs one operation by name: its outcome, with the reply filled. */
static enum outcome run_operation(const char *op, const struct jval *args, struct reply *r)
{
	static const struct jval empty = { .type = J_OBJ };
	for (size_t i = 0; i < sizeof(operations) / sizeof(operations[0]); i++)
		if (!strcmp(operations[i].name, op))
			return operations[i].fn(args ? args : &empty, r);
	return fail(r, "CommandNotFound", "the worker has no operation '%s'", op);
}

/*
 * Serves {"op", "args"} lines on fd until the other end goes (false) or an "exit" operation (true). The worker serves
 * the agent; a foreign holder serves the worker, a thread among them without touching agent_fd.
 */
static bool serve(int fd, bool in_thread)
{
	if (!in_thread)
		agent_fd = fd;
	struct sbuf line;
	sb_init(&line);
	bool exited = false;
	for (;;) {
		char c;
		ssize_t n = read(fd, &c, 1);
		if (n <= 0)
			break; /* the agent (or the worker) went away */
		if (c != '\n') {
			char one[2] = { c, 0 };
			sb_raw(&line, one);
			continue;
		}
		struct jval req;
		struct reply r;
		memset(&r, 0, sizeof(r));
		sb_init(&r.val);
		enum outcome o;
		const char *err = json_parse(line.buf ? line.buf : "", &req);
		line.len = 0;
		const char *op = NULL;
		if (err || json_str(&req, "op", &op))
			o = fail(&r, "GenericError", "malformed worker request");
		else
			o = run_operation(op, json_get(&req, "args"), &r);
		bool sent = respond(fd, &r, o);
		sb_free(&r.val);
		json_free(&req);
		if (!sent)
			break;
		if (o == REPLY_AND_EXIT) {
			exited = true;
			break;
		}
	}
	sb_free(&line);
	if (in_thread)
		close(fd);
	return exited;
}

void worker_main(int fd)
{
	signal(SIGTERM, SIG_DFL);
	_exit(serve(fd, false) ? exit_code : 0);
}

/*
 * `tcelab-agent foreign HOW OWNER_PID FD`: the fresh program of a foreign holder (spawn-foreign "scm-rights" or
 * "pidfd-getfd"). Its socket to the worker is fd 3. It gets the worker's container fd (FD in the worker) the way HOW
 * says, then serves the worker's requests with the operations above. When it cannot get the fd it answers the first
 * request with why, and exits.
 */
int foreign_main(int argc, char **argv)
{
	if (argc != 5) {
		fprintf(stderr, "usage: tcelab-agent foreign scm-rights|pidfd-getfd OWNER_PID FD (the socket to the worker on fd 3)\n");
		return 2;
	}
	prctl(PR_SET_NAME, "foreign-holder");
	int fd = -1, err = 0;
	if (!strcmp(argv[2], "scm-rights")) {
		if (receive_fds(3, &fd, 1))
			fd = -1;
		err = errno;
	} else if (!strcmp(argv[2], "pidfd-getfd")) {
		int pidfd = (int)syscall(SYS_pidfd_open, (pid_t)atoi(argv[3]), 0);
		fd = pidfd < 0 ? -1 : (int)syscall(SYS_pidfd_getfd, pidfd, atoi(argv[4]), 0);
		err = errno;
	}
	if (fd < 0) {
		struct reply r;
		memset(&r, 0, sizeof(r));
		sb_init(&r.val);
		respond(3, &r, fail_errno(&r, err, "%s: getting the container fd %s of pid %s", argv[2], argv[4], argv[3]));
		return 1;
	}
	container_fd = fd;
	return serve(3, false) ? exit_code : 0;
}

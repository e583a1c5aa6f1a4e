/*
 * A worker drives its group's device through VFIO, so that data really crosses the TCEs it maps: QEMU's edu
 * (hw/misc/edu.c, docs/specs/edu.rst) copies up to 4096 bytes between an IOVA and its own buffer with its DMA
 * engine. BAR0 is mmapped from the device fd; bus mastering is set in its config space; the completion interrupt
 * is its one MSI vector, signalled on an eventfd. Operations of the worker table (worker.c).
 */
#include "agent.h"
#include <byteswap.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
#include <linux/vfio.h>

/* edu's registers (BAR0) and its DMA buffer, as the device's own address space sees it. */
#define EDU_ID 0x00
#define EDU_IRQ_STATUS 0x24
#define EDU_IRQ_ACK 0x64
#define EDU_DMA_SRC 0x80
#define EDU_DMA_DST 0x88
#define EDU_DMA_COUNT 0x90
#define EDU_DMA_CMD 0x98
#define EDU_CMD_START 1
#define EDU_CMD_FROM_DEVICE 2
#define EDU_CMD_IRQ 4
#define EDU_BUFFER 0x40000ULL
#define EDU_BUFFER_SIZE 4096
/* What edu's id register reads: version 1.0, "ed". */
#define EDU_ID_VALUE 0x010000edU

static int device_fd = -1;
static volatile uint8_t *bar0;
static uint64_t bar0_size;
/* edu is native-endian to its QEMU target (big-endian ppc64); a little-endian guest sees every register swapped. */
static int swapped;
static int msi_fd = -1;

static uint32_t reg_read32(uint64_t off)
{
	uint32_t v = *(volatile uint32_t *)(bar0 + off);
	return swapped ? bswap_32(v) : v;
}

static void reg_write32(uint64_t off, uint32_t v)
{
	*(volatile uint32_t *)(bar0 + off) = swapped ? bswap_32(v) : v;
}

static uint64_t reg_read64(uint64_t off)
{
	uint64_t v = *(volatile uint64_t *)(bar0 + off);
	return swapped ? bswap_64(v) : v;
}

static void reg_write64(uint64_t off, uint64_t v)
{
	*(volatile uint64_t *)(bar0 + off) = swapped ? bswap_64(v) : v;
}

static long ms_between(const struct timespec *a, const struct timespec *b)
{
	return (b->tv_sec - a->tv_sec) * 1000 + (b->tv_nsec - a->tv_nsec) / 1000000;
}

/* {"address"}: the group's device by PCI address: its fd, BAR0 mapped, bus master and memory space on. */
enum outcome op_device_open(const struct jval *args, struct reply *r)
{
	const char *address;
	if (json_str(args, "address", &address) || strlen(address) > 32)
		return bad_arg(r, "address", -2, "the device's PCI address (domain:bus:slot.function)");
	int group = worker_group_fd();
	if (group < 0)
		return fail(r, "EBADF", "no group open in this worker (run 'open' first, or it was closed)");
	if (device_fd >= 0)
		return fail(r, "EEXIST", "this worker already has its device open");
	int fd = ioctl(group, VFIO_GROUP_GET_DEVICE_FD, address);
	if (fd < 0)
		return fail_errno(r, errno, "VFIO_GROUP_GET_DEVICE_FD %s", address);
	struct vfio_region_info bar = { .argsz = sizeof(bar), .index = VFIO_PCI_BAR0_REGION_INDEX };
	if (ioctl(fd, VFIO_DEVICE_GET_REGION_INFO, &bar)) {
		int e = errno;
		close(fd);
		return fail_errno(r, e, "VFIO_DEVICE_GET_REGION_INFO BAR0");
	}
	if (!(bar.flags & VFIO_REGION_INFO_FLAG_MMAP) || bar.size < 0x100) {
		close(fd);
		return fail(r, "ENOTSUP", "BAR0 of %s cannot be mmapped (flags 0x%x, size 0x%llx)", address, bar.flags, (unsigned long long)bar.size);
	}
	void *p = mmap(NULL, bar.size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, (off_t)bar.offset);
	if (p == MAP_FAILED) {
		int e = errno;
		close(fd);
		return fail_errno(r, e, "mmap BAR0 of %s", address);
	}
	struct vfio_region_info cfg = { .argsz = sizeof(cfg), .index = VFIO_PCI_CONFIG_REGION_INDEX };
	uint16_t command = 0;
	if (ioctl(fd, VFIO_DEVICE_GET_REGION_INFO, &cfg) || pread(fd, &command, 2, (off_t)cfg.offset + 4) != 2) {
		int e = errno;
		munmap(p, bar.size);
		close(fd);
		return fail_errno(r, e, "read the command register of %s", address);
	}
	/* PCI config space is little-endian whatever the CPU: memory space (bit 1) and bus master (bit 2). */
	uint16_t want = htole16((uint16_t)(le16toh(command) | 0x6));
	if (pwrite(fd, &want, 2, (off_t)cfg.offset + 4) != 2) {
		int e = errno;
		munmap(p, bar.size);
		close(fd);
		return fail_errno(r, e, "set bus master on %s", address);
	}
	device_fd = fd;
	bar0 = p;
	bar0_size = bar.size;
	uint32_t id = *(volatile uint32_t *)bar0;
	swapped = id != EDU_ID_VALUE && bswap_32(id) == EDU_ID_VALUE;
	sb_fmt(&r->val, "{\"address\":\"%s\",\"id\":\"0x%08x\",\"edu\":%s,\"swapped\":%s,\"bar0Size\":%llu}", address, reg_read32(EDU_ID),
	       reg_read32(EDU_ID) == EDU_ID_VALUE ? "true" : "false", swapped ? "true" : "false", (unsigned long long)bar0_size);
	return REPLY_OK;
}

static int need_device(struct reply *r)
{
	if (device_fd < 0)
		return fail(r, "EBADF", "no device open in this worker (run 'device-open' first)");
	return 0;
}

/* The device's one MSI vector on an eventfd (VFIO_DEVICE_SET_IRQS). */
enum outcome op_msi_enable(const struct jval *args, struct reply *r)
{
	(void)args;
	if (need_device(r))
		return REPLY_ERROR;
	if (msi_fd >= 0)
		return fail(r, "EEXIST", "MSI is already enabled");
	int efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (efd < 0)
		return fail_errno(r, errno, "eventfd");
	char buf[sizeof(struct vfio_irq_set) + sizeof(int32_t)];
	struct vfio_irq_set *set = (struct vfio_irq_set *)buf;
	*set = (struct vfio_irq_set){ .argsz = sizeof(buf), .flags = VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER,
				      .index = VFIO_PCI_MSI_IRQ_INDEX, .start = 0, .count = 1 };
	memcpy(set->data, &efd, sizeof(int32_t));
	if (ioctl(device_fd, VFIO_DEVICE_SET_IRQS, set)) {
		int e = errno;
		close(efd);
		return fail_errno(r, e, "VFIO_DEVICE_SET_IRQS MSI");
	}
	msi_fd = efd;
	sb_raw(&r->val, "{}");
	return REPLY_OK;
}

/* Interrupts signalled on the MSI eventfd within `wait_ms` (0 without MSI). */
static uint64_t msi_count(int wait_ms)
{
	if (msi_fd < 0)
		return 0;
	struct pollfd p = { .fd = msi_fd, .events = POLLIN };
	if (poll(&p, 1, wait_ms) <= 0)
		return 0;
	uint64_t n = 0;
	if (read(msi_fd, &n, sizeof(n)) != sizeof(n))
		return 0;
	return n;
}

/*
 * {"direction": "to-device"|"from-device", "iova", "size" (1..4096), "deviceOffset", "irq", "timeoutMs"}: one copy
 * by edu's DMA engine between an IOVA and its buffer, waited for (the engine runs from a timer ~100 ms of the
 * machine's clock after the command). With irq, the completion MSI is waited for and acknowledged; without, any
 * interrupt that comes within the same wait is counted too: the reply says how many arrived.
 */
enum outcome op_dma(const struct jval *args, struct reply *r)
{
	if (need_device(r))
		return REPLY_ERROR;
	const char *direction;
	uint64_t iova, size, dev_off = 0, timeout_ms = 10000;
	bool irq = false;
	if (json_str(args, "direction", &direction) || (strcmp(direction, "to-device") && strcmp(direction, "from-device")))
		return bad_arg(r, "direction", -2, "\"to-device\" (RAM → edu) or \"from-device\" (edu → RAM)");
	int rc = json_u64(args, "iova", &iova);
	if (rc)
		return bad_arg(r, "iova", rc, "an I/O virtual address");
	rc = json_u64(args, "size", &size);
	/* Never past edu's buffer: QEMU 10.0 only logs an out-of-range DMA, then overruns its own heap. */
	if (rc || size == 0 || size > EDU_BUFFER_SIZE)
		return bad_arg(r, "size", rc ? rc : -2, "bytes, 1 to 4096 (edu's buffer)");
	rc = json_u64(args, "deviceOffset", &dev_off);
	if (rc == -2 || dev_off + size > EDU_BUFFER_SIZE)
		return bad_arg(r, "deviceOffset", -2, "bytes into edu's 4096-byte buffer, with size inside it");
	if (json_bool(args, "irq", &irq) == -2)
		return bad_arg(r, "irq", -2, "true or false");
	rc = json_u64(args, "timeoutMs", &timeout_ms);
	if (rc == -2 || timeout_ms > 120000)
		return bad_arg(r, "timeoutMs", -2, "milliseconds, at most 120000");
	int from = !strcmp(direction, "from-device");
	msi_count(0); /* whatever came before is not this copy's */
	struct timespec t0, now;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (reg_read32(EDU_DMA_CMD) & EDU_CMD_START)
		return fail(r, "EBUSY", "edu's DMA engine is still busy with an earlier copy");
	reg_write64(EDU_DMA_SRC, from ? EDU_BUFFER + dev_off : iova);
	reg_write64(EDU_DMA_DST, from ? iova : EDU_BUFFER + dev_off);
	reg_write64(EDU_DMA_COUNT, size);
	reg_write64(EDU_DMA_CMD, EDU_CMD_START | (from ? EDU_CMD_FROM_DEVICE : 0) | (irq ? EDU_CMD_IRQ : 0));
	for (;;) {
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (!(reg_read64(EDU_DMA_CMD) & EDU_CMD_START))
			break;
		if ((uint64_t)ms_between(&t0, &now) > timeout_ms)
			return fail(r, "ETIMEDOUT", "edu's DMA did not complete within %llu ms", (unsigned long long)timeout_ms);
		usleep(1000);
	}
	long done_ms = ms_between(&t0, &now);
	/*
	 * edu raises its interrupt in the timer callback that ends the copy (hw/misc/edu.c, edu_dma_timer: the run bit
	 * cleared, then edu_raise_irq, under the BQL), so once the run bit reads clear the status says whether one was
	 * raised. Raised: wait for it on the eventfd (one that must not come is counted if it does). None raised: none
	 * can be on its way, so only what is already signalled is counted — no fixed wait for an interrupt that cannot come.
	 */
	uint32_t status = reg_read32(EDU_IRQ_STATUS);
	uint64_t irqs = msi_count(irq ? 2000 : status ? 200 : 0);
	if (status)
		reg_write32(EDU_IRQ_ACK, status);
	sb_fmt(&r->val, "{\"direction\":\"%s\",\"iova\":\"0x%llx\",\"size\":%llu,\"durationMs\":%ld,\"irqs\":%llu,\"irqStatus\":\"0x%x\"}",
	       direction, (unsigned long long)iova, (unsigned long long)size, done_ms, (unsigned long long)irqs, status);
	return REPLY_OK;
}

/* Gives the device back: MSI off, BAR0 unmapped, its fd closed. */
enum outcome op_device_close(const struct jval *args, struct reply *r)
{
	(void)args;
	if (need_device(r))
		return REPLY_ERROR;
	if (msi_fd >= 0) {
		struct vfio_irq_set off = { .argsz = sizeof(off), .flags = VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER,
					    .index = VFIO_PCI_MSI_IRQ_INDEX, .start = 0, .count = 0 };
		ioctl(device_fd, VFIO_DEVICE_SET_IRQS, &off);
		close(msi_fd);
		msi_fd = -1;
	}
	munmap((void *)bar0, bar0_size);
	bar0 = NULL;
	close(device_fd);
	device_fd = -1;
	sb_raw(&r->val, "{}");
	return REPLY_OK;
}

/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The ioctl ABI of /dev/tcelab_hcall (guest/hcall/tcelab_hcall.c), shared by the module and the guest agent
 * (guest/agent/hostile.c). Plain __u64/__s64 fields (and one char array): the agent needs no kernel source, only
 * the uapi <linux/types.h> and <linux/ioctl.h> every libc ships.
 *
 * Every field is an input unless it says "out". Unused inputs are zero. An ioctl fails with an errno only when the
 * request itself is unusable (a count out of range, no such PCI device, no such RTAS service); whatever the
 * hypervisor or RTAS answers comes back in rc/status with the ioctl succeeding.
 */
#ifndef TCELAB_HCALL_H
#define TCELAB_HCALL_H
#include <linux/ioctl.h>
#include <linux/types.h>

#define TCELAB_HCALL_DEVICE "/dev/tcelab_hcall"

#define TCELAB_HCALL_MAX_ARGS 9      /* r4..r12 in, and r4..r12 out (plpar_hcall9) */
#define TCELAB_INDIRECT_MAX_TCES 1024 /* more than the 512 PAPR allows in one list, so 513 can be tried */
#define TCELAB_RTAS_MAX_ARGS 8
#define TCELAB_RTAS_MAX_RET 8        /* nret counts the status: at most 7 outputs */
#define TCELAB_RTAS_SERVICE_LEN 64

/* Any hypercall: opcode and 9 arguments in (the hypervisor reads those it needs), rc and r4..r12 out. */
struct tcelab_hcall {
	__u64 opcode;
	__u64 args[TCELAB_HCALL_MAX_ARGS];
	__s64 rc;                          /* out: the hypervisor's return code (H_SUCCESS 0, H_PARAMETER -4…) */
	__u64 out[TCELAB_HCALL_MAX_ARGS];  /* out: r4..r12 as the call left them (H_GET_TCE: out[0] is the TCE) */
};

/* Where H_PUT_TCE_INDIRECT's list is. */
#define TCELAB_LIST_PAGE 0   /* the module's own page, 4 KiB aligned */
#define TCELAB_LIST_OFFSET 1 /* the module's page + offset bytes (misaligned when offset % 4096 != 0) */
#define TCELAB_LIST_PHYS 2   /* phys as given, nothing written (outside guest RAM, another page…) */

/*
 * H_PUT_TCE_INDIRECT(liobn, ioba, list, npages). The module writes ntces values (big-endian, as the hypervisor reads
 * them) at the list's address, unless where is TCELAB_LIST_PHYS; npages is passed as given and may differ from ntces.
 */
struct tcelab_indirect {
	__u64 liobn;
	__u64 ioba;
	__u64 npages;
	__u64 ntces;      /* values at tces (0..TCELAB_INDIRECT_MAX_TCES) */
	__u64 tces;       /* user pointer to ntces __u64 */
	__u64 where;      /* TCELAB_LIST_* */
	__u64 offset;     /* TCELAB_LIST_OFFSET: bytes from the page's start, at most 8192 */
	__u64 phys;       /* TCELAB_LIST_PHYS: the list's address */
	__s64 rc;         /* out */
	__u64 list_phys;  /* out: the address the hypervisor was given */
};

/*
 * An RTAS call by service name: its token is the /rtas device-tree property of that name. nargs int arguments in,
 * nret words out, the first of them the status.
 */
struct tcelab_rtas {
	char service[TCELAB_RTAS_SERVICE_LEN];  /* NUL-terminated, e.g. "ibm,query-pe-dma-window" */
	__u64 nargs;                            /* 0..TCELAB_RTAS_MAX_ARGS */
	__u64 nret;                             /* 1..TCELAB_RTAS_MAX_RET */
	__u64 args[TCELAB_RTAS_MAX_ARGS];       /* the low 32 bits of each are passed */
	__u64 token;                            /* out */
	__s64 status;                           /* out: RTAS status (0, -1, -2, -3, 990x…) */
	__u64 out[TCELAB_RTAS_MAX_RET - 1];     /* out: the nret - 1 outputs, each a 32-bit word */
};

/*
 * A PCI function's PE as the DDW RTAS calls name it (arch/powerpc/platforms/pseries/iommu.c): the config address
 * (pci_dn busno << 16 | devfn << 8) and the PHB's BUID (passed as BUID_HI = buid >> 32, BUID_LO = buid & 0xffffffff),
 * and the windows of the iommu table group the guest kernel uses for it.
 */
struct tcelab_pe {
	__u64 domain;
	__u64 bus;
	__u64 devfn;
	__u64 cfg_addr;        /* out */
	__u64 buid;            /* out */
	__u64 tables;          /* out: bit i set when table i (tables[i] of the group) exists */
	__u64 liobn[2];        /* out: each table's it_index */
	__u64 window_start[2]; /* out: it_offset << it_page_shift */
	__u64 window_size[2];  /* out: it_size << it_page_shift */
	__u64 page_shift[2];   /* out */
};

#define TCELAB_HCALL_MAGIC 0xB7
#define TCELAB_IOC_HCALL _IOWR(TCELAB_HCALL_MAGIC, 1, struct tcelab_hcall)
#define TCELAB_IOC_INDIRECT _IOWR(TCELAB_HCALL_MAGIC, 2, struct tcelab_indirect)
#define TCELAB_IOC_RTAS _IOWR(TCELAB_HCALL_MAGIC, 3, struct tcelab_rtas)
#define TCELAB_IOC_PE _IOWR(TCELAB_HCALL_MAGIC, 4, struct tcelab_pe)
#endif

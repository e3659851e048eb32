// Which pages outside the working set does KVM report dirty, though the guest never writes them?
// The same layout as Ferry's TestGuest: long-mode guest, code at 0x1000, page tables at
// 0x2000..0x4fff (accessed and dirty bits preset), writing pages from 4 MiB on; it uses the
// kvm-in-tcg probes' g64.S guest (include its g64.h).
//   gcc -O2 -static -I ../../../../shared/tools/kvm-in-tcg/probes -o lowpages lowpages.c
//   ../shared/tools/kvm-in-tcg/run ./lowpages 255 3; ... ./lowpages 255 3 prerun
// usage: lowpages <chunk mask> <passes> [prerun: one pass before logging starts]
// Measured in kvm-in-tcg (kvm_amd, npt=1, Debian 6.1 in QEMU 7.2 TCG), content of the low 4 MiB
// unchanged throughout:
//   pass 0: low dirty pages 1 2 3 4; later passes: 2 3 4; with prerun: 2 3 4 on every pass.
// Pages 2-4: the nested page walker treats the guest's page-table reads as writes (AMD does;
// QEMU's TCG probes page-table entries for store). Page 1, the code page: reported once, on
// its first nested fault. Both are false positives that a tracker may report; tests allow them.
#define _GNU_SOURCE
#include <err.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include "g64.h"
int main(int argc,char**argv){
  size_t memsz=16<<20, npages=memsz/4096; uint64_t chunk=strtoull(argv[1],0,0); int passes=atoi(argv[2]);
  int kvm=open("/dev/kvm",O_RDWR|O_CLOEXEC); int vm=ioctl(kvm,KVM_CREATE_VM,0); if(vm<0) err(1,"vm");
  uint8_t*mem=mmap(NULL,memsz,PROT_READ|PROT_WRITE,MAP_SHARED|MAP_ANONYMOUS,-1,0);
  memset(mem+0x1000,0xf4,4096); memcpy(mem+0x1000,g64_bin,g64_bin_len);
  uint64_t *pml4=(uint64_t*)(mem+0x2000), *pdpt=(uint64_t*)(mem+0x3000), *pd=(uint64_t*)(mem+0x4000);
  pml4[0]=0x3000|0x23; pdpt[0]=0x4000|0x23; for(int i=0;i<8;i++) pd[i]=((uint64_t)i<<21)|0xe3;
  struct kvm_userspace_memory_region r={.slot=0,.flags=KVM_MEM_LOG_DIRTY_PAGES,.memory_size=memsz,.userspace_addr=(uint64_t)mem};
  if(ioctl(vm,KVM_SET_USER_MEMORY_REGION,&r)<0) err(1,"region");
  int vcpu=ioctl(vm,KVM_CREATE_VCPU,0); if(vcpu<0) err(1,"vcpu");
  int nent=256; struct kvm_cpuid2*cpuid=calloc(1,sizeof *cpuid+nent*sizeof(struct kvm_cpuid_entry2)); cpuid->nent=nent;
  if(ioctl(kvm,KVM_GET_SUPPORTED_CPUID,cpuid)<0) err(1,"cpuid");
  for(unsigned i=0;i<cpuid->nent;i++) if(cpuid->entries[i].function==0x8000000a) printf("svm features edx=%x (nrips=%d)\n",cpuid->entries[i].edx,cpuid->entries[i].edx>>3&1);
  if(ioctl(vcpu,KVM_SET_CPUID2,cpuid)<0) err(1,"set cpuid2");
  int msz=ioctl(kvm,KVM_GET_VCPU_MMAP_SIZE,0); struct kvm_run*run=mmap(NULL,msz,PROT_READ|PROT_WRITE,MAP_SHARED,vcpu,0);
  struct kvm_sregs s; ioctl(vcpu,KVM_GET_SREGS,&s);
  struct kvm_segment seg={.base=0,.limit=0xffffffff,.selector=1<<3,.present=1,.type=11,.dpl=0,.db=0,.s=1,.l=1,.g=1};
  s.cs=seg; seg.type=3; seg.l=0; seg.db=1; seg.selector=2<<3; s.ds=s.es=s.fs=s.gs=s.ss=seg;
  s.cr3=0x2000; s.cr4=1u<<5; s.cr0=0x80000011u; s.efer=0x500;
  if(ioctl(vcpu,KVM_SET_SREGS,&s)<0) err(1,"sregs");
  struct kvm_regs regs={.rip=0x1000,.rflags=2,.rbx=1024,.rsi=chunk,.r8=4<<20};
  if(ioctl(vcpu,KVM_SET_REGS,&regs)<0) err(1,"regs");
  uint64_t*bm=calloc(npages/64,8);
  static uint8_t low[4<<20]; memcpy(low,mem,sizeof low);
  if(argc>3){ // run one pass before logging starts, then turn logging on
    r.flags=0; if(ioctl(vm,KVM_SET_USER_MEMORY_REGION,&r)<0) err(1,"region");
    for(;;){ if(ioctl(vcpu,KVM_RUN,0)<0) err(1,"run"); if(*(uint16_t*)((char*)run+34)==0x3f8) break; }
    r.flags=KVM_MEM_LOG_DIRTY_PAGES; if(ioctl(vm,KVM_SET_USER_MEMORY_REGION,&r)<0) err(1,"region");
    printf("one pass before logging\n");
  }
  struct kvm_dirty_log log={.slot=0,.dirty_bitmap=bm}; ioctl(vm,KVM_GET_DIRTY_LOG,&log);
  for(int p=0;p<passes;p++){
    int exits=0;
    for(;;){ if(ioctl(vcpu,KVM_RUN,0)<0) err(1,"run");
      if(run->exit_reason!=KVM_EXIT_IO) errx(1,"exit %d",run->exit_reason);
      exits++; if(*(uint16_t*)((char*)run+34)==0x3f8) break; }
    if(ioctl(vm,KVM_GET_DIRTY_LOG,&log)<0) err(1,"log");
    size_t c=0; printf("pass %d (%d exits): low dirty pages:",p,exits);
    for(size_t pg=0;pg<npages;pg++) if(bm[pg/64]>>(pg%64)&1){ if(pg<1024) printf(" %zu",pg); else c++; }
    printf("; working-set pages %zu; low 4 MiB changed: %s\n",c, memcmp(low,mem,sizeof low)?"YES":"no");
  }
  return 0;
}

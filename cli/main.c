#include <stdio.h>

#include <dynrl.h>

int main(void) {
  printf("dynrl %s\n", drl_version());
  return 0;
}

/* Small builders shared by the runtime's C tests. */
#ifndef ONEARM_TEST_FIXTURES_H
#define ONEARM_TEST_FIXTURES_H

#include <string.h>

#include "core/features.h"

/* A borrowed string value. */
static inline oa_value str_value(const char *s) {
  oa_value v = {0};
  v.type = OA_VAL_STR;
  v.str = s;
  v.len = strlen(s);
  return v;
}

/* Context "user" (cat) x action "topic" (cat), crossed, hashed into dim. */
static inline oa_features *user_topic_space(int32_t dim, uint64_t seed, oa_error *err) {
  oa_field_spec fields[2];
  memset(fields, 0, sizeof fields);
  strcpy(fields[0].name, "user");
  fields[0].side = OA_SIDE_CONTEXT;
  fields[0].kind = OA_FK_CAT;
  strcpy(fields[1].name, "topic");
  fields[1].side = OA_SIDE_ACTION;
  fields[1].kind = OA_FK_CAT;
  const oa_cross_spec cross[1] = {{0, 1, 0}};
  oa_features_spec spec = {OA_LAYOUT_HASHED, dim, 1, 2, fields, 1, cross, seed};
  return oa_features_new(&spec, err);
}

#endif

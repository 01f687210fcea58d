/* yamlutil.h - load a YAML file or text into a libyaml document, with
 * errors that name the file and line. Shared by config.c and program.c. */
#ifndef FIDELIO_YAMLUTIL_H
#define FIDELIO_YAMLUTIL_H

#include <stddef.h>
#include <yaml.h>

/* Parse path (or, if text is not NULL, text under the name path) into doc.
 * Returns 0 and a document the caller deletes with yaml_document_delete(),
 * or -1 with err "path:line: YAML error: ...". */
int yaml_load(const char *path, const char *text, yaml_document_t *doc, char *err, size_t errlen);

/* 1-based line of a node. */
static inline unsigned long yaml_line(const yaml_node_t *n) { return (unsigned long)n->start_mark.line + 1; }

/* The scalar text of a node, or NULL if it is not a scalar. */
static inline const char *yaml_scalar(const yaml_node_t *n)
{
    return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

/* The value of key in mapping node map, or NULL. */
yaml_node_t *yaml_map_get(yaml_document_t *doc, yaml_node_t *map, const char *key);

#endif

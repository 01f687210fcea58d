/* yamlutil.c - libyaml document loading. */
#include "yamlutil.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

int yaml_load(const char *path, const char *text, yaml_document_t *doc, char *err, size_t errlen)
{
    FILE *f = NULL;
    yaml_parser_t parser;
    if (!text && !(f = fopen(path, "rb"))) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    if (!yaml_parser_initialize(&parser)) {
        if (f)
            fclose(f);
        snprintf(err, errlen, "%s: out of memory", path);
        return -1;
    }
    if (f)
        yaml_parser_set_input_file(&parser, f);
    else
        yaml_parser_set_input_string(&parser, (const unsigned char *)text, strlen(text));
    int rc = 0;
    if (!yaml_parser_load(&parser, doc)) {
        snprintf(err, errlen, "%s:%lu: YAML error: %s%s%s", path, (unsigned long)parser.problem_mark.line + 1,
                 parser.problem ? parser.problem : "unknown", parser.context ? " " : "",
                 parser.context ? parser.context : "");
        rc = -1;
    }
    yaml_parser_delete(&parser);
    if (f)
        fclose(f);
    return rc;
}

yaml_node_t *yaml_map_get(yaml_document_t *doc, yaml_node_t *map, const char *key)
{
    if (!map || map->type != YAML_MAPPING_NODE)
        return NULL;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        const char *k = yaml_scalar(yaml_document_get_node(doc, p->key));
        if (k && strcmp(k, key) == 0)
            return yaml_document_get_node(doc, p->value);
    }
    return NULL;
}

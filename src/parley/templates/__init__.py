"""Message templates: sandboxed rendering, merge tags, locale formatting, SMS segmentation.

Pure code (no I/O, no database): services pass in a template source and a context
built by ``case_context`` and get text back, or a ``TemplateError`` saying what to fix.
"""

from parley.templates.context import CONTEXT_OBJECTS, case_context
from parley.templates.errors import (
    InvalidTemplate,
    MissingVariables,
    RenderError,
    TemplateError,
    UnsafeTemplate,
)
from parley.templates.formatting import (
    DEFAULT_LOCALE,
    format_date,
    format_datetime,
    format_money,
    format_number,
    resolve_locale,
)
from parley.templates.rendering import (
    TemplateCacheInfo,
    clear_template_cache,
    render,
    template_cache_info,
    template_variables,
    validate,
)
from parley.templates.sms import (
    GSM7,
    GSM7_BASIC,
    GSM7_EXTENSION,
    UCS2,
    SmsAnalysis,
    analyze_sms,
    is_gsm7,
    split_sms,
)
from parley.templates.tags import find_tags

__all__ = [
    "CONTEXT_OBJECTS",
    "DEFAULT_LOCALE",
    "GSM7",
    "GSM7_BASIC",
    "GSM7_EXTENSION",
    "UCS2",
    "InvalidTemplate",
    "MissingVariables",
    "RenderError",
    "SmsAnalysis",
    "TemplateCacheInfo",
    "TemplateError",
    "UnsafeTemplate",
    "analyze_sms",
    "case_context",
    "clear_template_cache",
    "find_tags",
    "format_date",
    "format_datetime",
    "format_money",
    "format_number",
    "is_gsm7",
    "render",
    "resolve_locale",
    "split_sms",
    "template_cache_info",
    "template_variables",
    "validate",
]

"""Amazon States Language (AWS Step Functions) in and out: `import_definition` turns an ASL definition into an
agentfsm machine, refusing with a located reason (a JSON pointer) what it cannot express."""

from agentfsm.asl.importer import Imported, import_definition, parse_bind
from agentfsm.asl.problems import AslInputError, Refusal, pointer_text

__all__ = ["AslInputError", "Imported", "Refusal", "import_definition", "parse_bind", "pointer_text"]

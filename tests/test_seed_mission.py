import pytest
import asyncio
from typing import Optional
from unittest.mock import Mock, AsyncMock

from agentfsm.seed import State, StateMachine, StateContext, StateType
from agentfsm.seed import (
    InitialState, ThinkingState, ActingState,
    create_agent_state_machine
)
from agentfsm.seed import StatePersistence, AutoSaveStateMachine
from agentfsm.seed import VersionedStateMachine

class TestStateMachine:
    @pytest.mark.asyncio
    async def test_basic_state_machine(self):
        """Test basic state machine functionality"""
        sm = StateMachine("test")
        
        # Create simple states
        class StartState(State):
            async def execute(self, context: StateContext) -> Optional[str]:
                context.set("started", True)
                return "end"
        
        class EndState(State):
            async def execute(self, context: StateContext) -> Optional[str]:
                context.set("ended", True)
                return None
        
        # Add states
        sm.add_state(StartState("start"), initial=True)
        sm.add_state(EndState("end"), final=True)
        
        # Run machine
        result = await sm.start()
        
        assert result.get("started") == True
        assert result.get("ended") == True
    
    @pytest.mark.asyncio
    async def test_state_transitions(self):
        """Test state transitions"""
        sm = StateMachine("test")
        transitions_recorded = []
        
        def record_transition(transition, context):
            transitions_recorded.append(transition)
        
        sm.add_transition_callback(record_transition)
        
        # Create states with explicit transitions
        class StateA(State):
            async def execute(self, context: StateContext) -> Optional[str]:
                return "b"
        
        class StateB(State):
            async def execute(self, context: StateContext) -> Optional[str]:
                return "c"
        
        class StateC(State):
            async def execute(self, context: StateContext) -> Optional[str]:
                return None
        
        sm.add_state(StateA("a"), initial=True)
        sm.add_state(StateB("b"))
        sm.add_state(StateC("c"), final=True)
        
        await sm.start()
        
        assert len(transitions_recorded) == 2
        assert transitions_recorded[0].from_state == "a"
        assert transitions_recorded[0].to_state == "b"
        assert transitions_recorded[1].from_state == "b"
        assert transitions_recorded[1].to_state == "c"

class TestAgentStates:
    @pytest.mark.asyncio
    async def test_initial_state(self):
        """Test initial state processing"""
        state = InitialState()
        context = StateContext()
        
        # No task provided
        next_state = await state.execute(context)
        assert next_state == "error"
        
        # Simple task
        context.set("task", "Calculate 2 + 2")
        next_state = await state.execute(context)
        assert next_state == "thinking"
        
        # Complex task requiring planning
        context.set("task", "Create a plan to solve this step by step")
        next_state = await state.execute(context)
        assert next_state == "planning"
    
    @pytest.mark.asyncio
    async def test_thinking_state(self):
        """Test thinking state"""
        # Mock agent
        mock_agent = Mock()
        mock_agent.llm = AsyncMock()
        
        state = ThinkingState(agent=mock_agent)
        context = StateContext()
        context.set("task", "Test task")
        
        # Mock LLM response with final answer
        mock_agent.llm.complete.return_value = "Final Answer: The result is 4"
        
        next_state = await state.execute(context)
        
        assert next_state == "finalizing"
        assert context.get("final_answer") == "The result is 4"

class TestStatePersistence:
    @pytest.mark.asyncio
    async def test_save_and_load_state(self, tmp_path):
        """Test state persistence"""
        persistence = StatePersistence(str(tmp_path))
        
        # Create state machine
        sm = StateMachine("test")
        sm.current_state = "test_state"
        sm.context.set("data", {"key": "value"})
        
        # Save state
        await persistence.save_state("test_machine", sm)
        
        # Create new machine and load state
        sm2 = StateMachine("test")
        loaded = await persistence.load_state("test_machine", sm2)
        
        assert loaded == True
        assert sm2.current_state == "test_state"
        assert sm2.context.get("data") == {"key": "value"}
    
    @pytest.mark.asyncio
    async def test_checkpoints(self, tmp_path):
        """Test checkpoint functionality"""
        persistence = StatePersistence(str(tmp_path))
        
        sm = StateMachine("test")
        sm.current_state = "state1"
        sm.context.set("value", 1)
        
        # Save checkpoint
        await persistence.save_checkpoint("test_machine", "checkpoint1", sm)
        
        # Modify state
        sm.current_state = "state2"
        sm.context.set("value", 2)
        
        # Load checkpoint
        loaded = await persistence.load_checkpoint("test_machine", "checkpoint1", sm)
        
        assert loaded == True
        assert sm.current_state == "state1"
        assert sm.context.get("value") == 1

class TestVersionedStateMachine:
    @pytest.mark.asyncio
    async def test_rollback(self):
        """Test state rollback"""
        sm = VersionedStateMachine("test")
        
        # Create states
        class IncrementState(State):
            async def execute(self, context: StateContext) -> Optional[str]:
                count = context.get("count", 0)
                context.set("count", count + 1)
                return None
        
        sm.add_state(IncrementState("increment"), initial=True, final=True)
        
        # Set initial context
        sm.context.set("count", 0)
        sm.current_state = "increment"
        
        # Take snapshots at different counts
        for i in range(5):
            sm.history.take_snapshot("increment", sm.context)
            await sm.states["increment"].execute(sm.context)
        
        assert sm.context.get("count") == 5
        
        # Rollback 3 steps
        await sm.rollback(3)
        assert sm.context.get("count") == 2
    
    @pytest.mark.asyncio
    async def test_branches(self):
        """Test branching functionality"""
        sm = VersionedStateMachine("test")
        
        # Set initial state
        sm.context.set("value", "main")
        sm.current_state = "test"
        
        # Create branch
        sm.create_branch("feature")
        
        # Modify main
        sm.context.set("value", "modified")
        
        # Switch to branch
        await sm.switch_branch("feature")
        
        assert sm.context.get("value") == "main"

if __name__ == "__main__":
    pytest.main([__file__, "-v"])
